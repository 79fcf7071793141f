"""The command line: help, usage errors and configuration errors are one line with the right code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from testpool.cli import cli

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "testpool", *args], cwd=cwd or REPO, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(Path.home())},
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def test_help_documents_every_option_and_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--workers", "--file", "--full", "--timeout", "--test-timeout", "--retries",
        "--max-failures", "--exitfirst", "--fail-on-flaky", "--verbose", "--config", "--watch",
        "TESTPOOL_WORKERS", "130",
    ):  # fmt: skip
        assert option in result.output, option


def test_help_documents_the_runner_args_and_repeated_file() -> None:
    output = CliRunner().invoke(cli, ["--help"]).output
    assert "testpool [OPTIONS] -- ARGS" in output
    assert "repeat it for" in output and "one per" in output
    assert "-- ARGS" in CliRunner().invoke(cli, ["list", "--help"]).output


@pytest.mark.parametrize(
    ("args", "ours", "theirs"),
    [
        (["-w", "2", "--", "-k", "x"], ["-w", "2"], ["-k", "x"]),
        (["list", "--", "a", "--", "b"], ["list"], ["a", "--", "b"]),
        (["-f", "--", "--", "-m", "m"], ["-f", "--"], ["-m", "m"]),  # a pattern "--"
        (["-xf", "--", "--"], ["-xf", "--"], []),  # -x and -f PATTERN in one
        (["-f--", "--", "y"], ["-f--"], ["y"]),  # -f with its value attached
        (["--file=a", "--full"], ["--file=a", "--full"], []),
    ],
)
def test_runner_args_are_split_at_the_first_double_dash_that_is_no_value(
    args: list[str], ours: list[str], theirs: list[str]
) -> None:
    from testpool.cli import split_runner_args

    assert split_runner_args(args, {"-f", "--file", "-w", "--workers"}) == (ours, theirs)


def test_clean_takes_no_runner_args() -> None:
    result = CliRunner().invoke(cli, ["clean", "--", "x"])
    assert result.exit_code == 2


def test_subcommand_help() -> None:
    for command in ("clean", "list", "init"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_workers_out_of_range_is_one_line_exit_2() -> None:
    code, out, err = invoke("--workers", "9")
    assert code == 2
    assert err.strip().splitlines() == [
        "testpool: error: Invalid value for '-w' / '--workers': 9 is not in the range 1<=x<=8, nor 'auto'."
    ]
    assert out == ""


def test_workers_from_the_environment_is_checked_too(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [], env={"TESTPOOL_WORKERS": "0"})
    assert result.exit_code == 2


def test_unknown_option_is_one_line_exit_2() -> None:
    code, _, err = invoke("--wrokers", "2")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("testpool: error: No such option '--wrokers'")
    assert "'--workers'" in err


def _project(tmp_path: Path, config: str) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    (tmp_path / "testpool.toml").write_text(config)
    return tmp_path


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            'server = "x"\nwokers = 2\n',
            "testpool.toml: unknown key 'wokers' (did you mean 'workers'?)",
        ),
        (
            'server = "x"\nworkers = "4"\n',
            "testpool.toml: 'workers' must be an integer from 1 to 8, or \"auto\", got str '4'",
        ),
        (
            'server = "x"\nworkers = 12\n',
            "testpool.toml: 'workers' must be from 1 to 8 or \"auto\", got 12",
        ),
        (
            "workers = 2\n",
            "testpool.toml: 'server' is required (the command that starts a dev server)",
        ),
        (
            'server = "x"\nisolation = "none"\n',
            "testpool.toml: 'isolation' must be one of 'worker', 'test'",
        ),
        (
            'server = "x"\nrunner = "command"\n',
            "testpool.toml: runner 'command' needs both 'discover' and 'run'",
        ),
        (
            'server = "x"\ndata_seed = "missing"\n',
            "testpool.toml: 'data_seed' folder not found: missing",
        ),
        ('server = "x"\nenv = {A = 1}\n', "testpool.toml: 'env.A' must be a string"),
        (
            'server = "x"\nhealth_interval = nan\n',
            "testpool.toml: 'health_interval' must be a positive number of seconds",
        ),
        (
            'server = "x"\nstartup_timeout = inf\n',
            "testpool.toml: 'startup_timeout' must be a positive number of seconds",
        ),
        (
            'server = "x"\ntest_timeout = -nan\n',
            "testpool.toml: 'test_timeout' must be a positive number of seconds",
        ),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path: Path, config: str, message: str) -> None:
    project = _project(tmp_path, config)
    for command in ([], ["list"]):
        code, _, err = invoke(*command, cwd=project)
        assert code == 2
        assert err.strip().splitlines() == [f"testpool: error: {message}"]


def test_invalid_toml_is_one_line_exit_2(tmp_path: Path) -> None:
    project = _project(tmp_path, "server = \n")
    code, _, err = invoke(cwd=project)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "invalid TOML" in err


def test_no_config_found(tmp_path: Path) -> None:
    code, _, err = invoke("list", cwd=tmp_path)
    assert code == 2
    assert err.startswith("testpool: error: no testpool configuration found")


def test_config_option_names_another_file(tmp_path: Path) -> None:
    project = _project(tmp_path, 'server = "x"\nwokers = 1\n')
    (project / "alt.toml").write_text('server = "x"\ntests = "tests"\n')
    result = CliRunner().invoke(cli, ["list", "--config", str(project / "alt.toml")])
    assert result.exit_code == 0, result.output
    assert "run    tests/test_a.py::test_a" in result.output


def test_pyproject_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.testpool]\nserver = "x"\ntests = "tests"\n'
    )
    code, out, err = invoke("list", cwd=tmp_path / "tests")
    assert code == 0, err
    assert "tests/test_a.py::test_a" in out
    assert "not in cache" in out


def test_list_on_the_bundled_example() -> None:
    code, out, err = invoke("list")
    assert code == 0, err
    assert "e2e/test_api_scrape.py::TestApiScrape::" in out
    assert out.strip().splitlines()[-1].startswith(f"{len(out.strip().splitlines()) - 1} test(s)")


def test_python_dash_m_and_console_script_agree() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and out.startswith("testpool, version ")
    script = Path(sys.executable).parent / "testpool"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert done.stdout == out


@pytest.mark.parametrize("option", ["--timeout", "--test-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e999", "0", "-1"])
def test_timeouts_must_be_positive_finite_numbers(option: str, value: str) -> None:
    code, _, err = invoke(option, value)
    assert code == 2
    assert err.strip().splitlines() == [
        f"testpool: error: Invalid value for '{option}': {value!r} is not a positive, "
        "finite number of seconds."
    ]


def test_timeout_from_the_environment_is_checked_too() -> None:
    result = CliRunner().invoke(cli, [], env={"TESTPOOL_TEST_TIMEOUT": "nan"})
    assert result.exit_code == 2


def test_config_file_that_is_not_utf8_is_one_line_exit_2(tmp_path: Path) -> None:
    project = _project(tmp_path, "")
    (project / "testpool.toml").write_bytes(b'server = "caf\xe9"\n')
    code, _, err = invoke("list", cwd=project)
    assert code == 2
    assert err.strip().splitlines() == [
        f"testpool: error: {project / 'testpool.toml'}: invalid TOML: not UTF-8 text (line 1)"
    ]


@pytest.mark.parametrize("tool", ["1", '"testpool"', "[1, 2]"])
@pytest.mark.parametrize("where", ["here", "parent"])
def test_pyproject_whose_tool_is_not_a_table_is_one_line_exit_2(
    tmp_path: Path, tool: str, where: str
) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    folder = tmp_path / "sub" if where == "parent" else tmp_path
    folder.mkdir(exist_ok=True)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'tool = {tool}\n\n[project]\nname = "x"\n')
    code, _, err = invoke("list", cwd=folder)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"testpool: error: {pyproject}: 'tool' must be a table")


def test_results_dir_that_is_a_file_is_one_line_exit_2(tmp_path: Path) -> None:
    project = _project(tmp_path, 'server = "x"\ntests = "tests"\nresults_dir = "out.txt"\n')
    (project / "out.txt").write_text("not a folder\n")
    for command in ([], ["list"]):
        code, _, err = invoke(*command, cwd=project)
        assert code == 2
        assert err.strip().splitlines() == [
            "testpool: error: testpool.toml: 'results_dir' is not a folder: out.txt"
        ]


def test_cache_file_that_is_a_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    project = _project(tmp_path, 'server = "x"\ntests = "tests"\n')
    (project / ".test-cache.json").mkdir()
    for command in ([], ["list"]):
        code, _, err = invoke(*command, cwd=project)
        assert code == 2
        assert err.strip().splitlines() == [
            "testpool: error: testpool.toml: 'cache_file' is a folder, not a file: .test-cache.json"
        ]


INTERRUPT_AT_IMPORT = """\
import os, signal, sys


class InterruptAtImport:
    # Sends this process a signal when Python imports the named module: Ctrl-C while starting.
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["INTERRUPT_AT_IMPORT"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), getattr(signal, os.environ["INTERRUPT_SIGNAL"]))
        return None


sys.meta_path.insert(0, InterruptAtImport())
"""


@pytest.mark.parametrize("command", ["module", "script"])
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_an_interrupt_while_python_imports_testpool_is_one_line_and_130(
    tmp_path: Path, command: str, signal_name: str
) -> None:
    # Regression: Ctrl-C in the first ~0.15 s (Python importing click, rich and testpool's
    # modules) printed a KeyboardInterrupt traceback; SIGTERM there killed testpool silently.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INTERRUPT_AT_IMPORT)
    argv = [sys.executable, "-m", "testpool"] if command == "module" else [
        str(Path(sys.executable).parent / "testpool")
    ]  # fmt: skip
    done = subprocess.run(
        [*argv, "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(Path.home()),
             "PYTHONPATH": str(hook), "INTERRUPT_AT_IMPORT": "click",
             "INTERRUPT_SIGNAL": signal_name},
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (130, "testpool: interrupted\n")
    assert done.stdout == ""


def test_the_light_entry_point_exits_as_the_cli_does() -> None:
    from testpool.__main__ import INTERRUPTED
    from testpool.errors import ExitCode

    assert INTERRUPTED == ExitCode.INTERRUPTED
