"""A worker that does not become healthy: testpool says what it can see (where the server
listens, what the health path answered) and does not wait out startup_timeout for a server
that clearly listens somewhere else."""

from __future__ import annotations

import time

from support import Project

# A server with a fixed port and address of its own, as a project's dev config hard-codes.
SERVER = """
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
sock = socket.socket(family)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((sys.argv[1], int(sys.argv[2])))
sock.listen()
print("listening on", sys.argv[2], flush=True)
time.sleep(600)
"""

# Answers every request with a redirect to a login page.
REDIRECTING = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", "/login?next=/health")
        self.send_header("Content-Length", "0")
        self.end_headers()

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def _error_line(stderr: str) -> str:
    return stderr.strip().splitlines()[0]


def test_a_server_on_another_port_fails_within_seconds_with_the_reason(project: Project) -> None:
    elsewhere = project.port_base + 6  # in our own port block: nobody else's
    project.write("server.py", SERVER)
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.config(server=f"{{python}} server.py 127.0.0.1 {elsewhere}", startup_timeout=120)

    started = time.monotonic()
    result = project.run(timeout=120)
    took = time.monotonic() - started

    assert result.returncode == 3
    assert _error_line(result.stderr) == (
        f"testpool: error: worker 0 (port {project.port_base}) failed to start: the server is "
        f"listening on {elsewhere}, not {project.port_base}: does it read PORT? (or give it "
        "{port} in 'server', 'env' or a 'files' template); command: "
        f"{project.command()[0]} server.py 127.0.0.1 {elsewhere}"
    )
    assert f"listening on {elsewhere}" in result.stderr, "the log tail follows"
    assert took < 60, f"waited {took:.0f} s of a 120 s startup_timeout"
    project.assert_clean(result.run_id)


def test_a_server_on_ipv6_loopback_is_told_to_bind_127_0_0_1(project: Project) -> None:
    project.write("server.py", SERVER)
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.config(server="{python} server.py ::1 {port}", startup_timeout=120)

    result = project.run(timeout=120)

    assert result.returncode == 3
    assert (
        f"failed to start: the server listens on [::1]:{project.port_base}, which "
        f"127.0.0.1:{project.port_base} does not reach: make it bind 127.0.0.1 (or 0.0.0.0)"
    ) in _error_line(result.stderr)
    project.assert_clean(result.run_id)


def test_a_redirecting_health_path_shows_where_it_points(project: Project) -> None:
    project.write("server.py", REDIRECTING)
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.config(server="{python} server.py", startup_timeout=3)

    result = project.run(timeout=120)

    assert result.returncode == 3
    assert (
        "failed to start: not healthy after 3 s (last probe: /health answered HTTP 302, a "
        "redirect to /login?next=/health: health_path must answer 200 itself (testpool does "
        "not follow redirects))"
    ) in _error_line(result.stderr)
    project.assert_clean(result.run_id)


def test_a_server_that_listens_nowhere_is_said_so_at_the_timeout(project: Project) -> None:
    project.write("server.py", "import time\nprint('warming up', flush=True)\ntime.sleep(600)\n")
    project.write("tests/test_a.py", "def test_a():\n    pass\n")
    project.config(server="{python} server.py", startup_timeout=2)

    result = project.run(timeout=120)

    assert result.returncode == 3
    assert (
        "failed to start: not healthy after 2 s (last probe: ConnectError); the server "
        f"listens on no port (it should listen on {project.port_base})"
    ) in _error_line(result.stderr)
    project.assert_clean(result.run_id)
