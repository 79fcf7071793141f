"""The one exception tree of testpool.

::

    TestpoolError                 exit 1 unless a subclass says otherwise
    ├── UsageError                exit 2  a command line that cannot be acted on
    ├── ConfigError               exit 2  bad config file, key, type or value
    │   └── SecretsError          exit 2  missing secrets file, no sops, decryption failed
    ├── CacheError                exit 1  the cache file cannot be written (callers warn)
    ├── DiscoveryError            exit 1  the runner could not list the tests
    ├── NoTestsError              exit 5  nothing discovered, or nothing matched --file
    └── InfrastructureError       exit 3  tmux missing, a port taken, a worker that won't start
        ├── PortInUseError
        ├── ServiceError           a shared service did not start, or died and stayed dead
        └── WorkerStartError
            ├── ServerExitedError  the server process died before it was healthy
            ├── WrongAddressError  it listens on another port or address than its own
            └── HealthTimeoutError it never answered within startup_timeout

Each error's ``str()`` is the one line the CLI prints; the CLI is the single place that turns
an error into a message and an exit code. ``KeyboardInterrupt`` is never caught as one of these.
"""

from __future__ import annotations


class ExitCode:
    """Process exit codes, documented in the README and ``--help``."""

    OK = 0
    FAILED = 1
    USAGE = 2
    INFRASTRUCTURE = 3
    NO_TESTS = 5
    INTERRUPTED = 130


class TestpoolError(Exception):
    """Base of every error testpool raises on purpose."""

    __test__ = False  # not a pytest test class, despite the name
    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        # Extra lines (a log tail, a tool's output) shown under the one-line message.
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class UsageError(TestpoolError):
    """The command line names something ambiguously (``testpool explain`` matching several
    tests)."""

    exit_code = ExitCode.USAGE


class ConfigError(TestpoolError):
    """The configuration (file, key, type or value) is wrong."""

    exit_code = ExitCode.USAGE


class SecretsError(ConfigError):
    """A secrets file is missing or cannot be decrypted, or sops is not installed."""


class CacheError(TestpoolError):
    """The cache file cannot be written. Never ends a run: the callers turn it into a warning."""


class DiscoveryError(TestpoolError):
    """The runner failed to list the tests (for example a syntax error in a test file)."""


class NoTestsError(TestpoolError):
    """Nothing to run: no tests discovered, or none matched the filter."""

    exit_code = ExitCode.NO_TESTS


class InfrastructureError(TestpoolError):
    """tmux, ports or workers: the machinery around the tests failed."""

    exit_code = ExitCode.INFRASTRUCTURE


class PortInUseError(InfrastructureError):
    """A worker port is held by a process testpool did not start."""


class ServiceError(InfrastructureError):
    """A shared service did not become ready, or died and could not be restarted."""


class WorkerStartError(InfrastructureError):
    """A worker's dev server did not become healthy."""


class ServerExitedError(WorkerStartError):
    """The dev server process exited before it answered its health check."""


class WrongAddressError(WorkerStartError):
    """The dev server listens, but not where testpool probes it (another port or address)."""


class HealthTimeoutError(WorkerStartError):
    """The dev server did not answer its health check within the start-up timeout."""
