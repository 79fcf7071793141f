"""Placeholders in server, env, health_path and run, and per-worker files: a project whose
server takes its port on the command line or from a config file, and whose tests read another
variable than TEST_BASE_URL, runs with config alone."""

from __future__ import annotations

import pytest
from support import Project

# A server that knows nothing of PORT or DATA_DIR: its port comes from --port or from an ini
# file (--config), and it answers its health check on a path of its own.
SERVER = """
import configparser, json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
settings = {}
if "--config" in args:
    parser = configparser.ConfigParser()
    parser.read(args["--config"])
    settings = dict(parser["server"])
port = int(args.get("--port") or settings["port"])

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/v1/die":
            os._exit(3)
        if self.path.startswith("/v1/"):
            body = {
                "path": self.path,
                "settings": settings,
                "argv": sys.argv[1:],
                "env": {k: v for k, v in os.environ.items() if k.startswith("APP_")},
            }
            data = json.dumps(body).encode()
            self.send_response(200)
        else:
            data = b"no"
            self.send_response(404)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

print("listening on", port, flush=True)
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

TESTS = """
import os
import httpx

# Read at import: under testpool this is the collection-time stand-in, never a real server.
AT_IMPORT = os.environ.get("SERVER_URL", "")

def test_server_url_is_the_workers():
    url = os.environ["SERVER_URL"]
    assert url == os.environ["TEST_BASE_URL"] + "/v1"
    served = httpx.get(url + "/whoami").json()
    assert served["path"] == "/v1/whoami"
    assert served["env"]["APP_WORKER_DB"] == "db-" + os.environ["TESTPOOL_WORKER"]
    assert os.environ["APP_WORKER_DB"] == served["env"]["APP_WORKER_DB"]
    assert os.environ["APP_LITERAL"] == "{port} ${HOME}"
    if os.environ["APP_MODE"] == "session":  # imported once, before any worker existed
        assert AT_IMPORT == "http://testpool-collection-time.invalid/v1"
    else:  # imported in the test's own pytest, with its worker's environment
        assert AT_IMPORT == url

def test_files_rendered_for_this_worker():
    served = httpx.get(os.environ["SERVER_URL"] + "/x").json()
    settings = served["settings"]
    assert settings["port"] == os.environ["PORT"]
    assert settings["data"] == os.environ["DATA_DIR"]
    assert settings["url"] == os.environ["TEST_BASE_URL"]
    assert settings["literal"] == "{port}"
    with open(os.path.join(os.environ["DATA_DIR"], "conf", "app.ini")) as handle:
        assert "port = " + os.environ["PORT"] in handle.read()
"""

INI = """
[server]
port = {port}
data = {data_dir}
url = {base_url}
worker = {worker}
literal = {{port}}
"""


@pytest.mark.parametrize("mode", ["session", "process"])
def test_server_env_health_path_and_files_take_the_workers_values(
    project: Project, mode: str
) -> None:
    project.write("server.py", SERVER)
    project.write("config/app.ini.in", INI)
    project.write("tests/test_api.py", TESTS)
    project.config(
        server="{python} server.py --config {data_dir}/conf/app.ini",
        health_path="/v1/health",
        files={"conf/app.ini": "config/app.ini.in"},
        env={
            "SERVER_URL": "{base_url}/v1",
            "APP_WORKER_DB": "db-{worker}",
            "APP_LITERAL": "{{port}} ${HOME}",
            "APP_MODE": mode,
        },
        workers=2,
        pytest_mode=mode,
    )

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(result.statuses.values()) == {"passed"}
    assert {t["worker"] for t in result.report["tests"]} == {0, 1}  # type: ignore[index]
    project.assert_clean(result.run_id)


def test_port_on_the_command_line_and_files_rendered_again_on_reseed(project: Project) -> None:
    """isolation = "test" empties DATA_DIR between tests: the files are rendered again."""
    project.write("server.py", SERVER)
    project.write("config/app.ini.in", INI)
    project.write(
        "tests/test_reseed.py",
        """
        import os
        from pathlib import Path

        def check():
            ini = Path(os.environ["DATA_DIR"], "conf", "app.ini")
            assert "port = " + os.environ["PORT"] in ini.read_text()
            assert not Path(os.environ["DATA_DIR"], "scratch").exists()
            ini.unlink()
            Path(os.environ["DATA_DIR"], "scratch").write_text("x")

        def test_one():
            check()

        def test_two():
            check()
        """,
    )
    project.config(
        server="{python} server.py --port {port}",
        health_path="/v1/health",
        files={"conf/app.ini": "config/app.ini.in"},
        isolation="test",
        workers=1,
    )

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert set(result.statuses.values()) == {"passed"}
    project.assert_clean(result.run_id)


def test_files_are_rendered_into_the_fresh_data_dir_of_a_restarted_worker(
    project: Project,
) -> None:
    marker = project.tmp / "first-data-dir"
    project.write("server.py", SERVER)
    project.write("config/app.ini.in", INI)
    project.write(
        "tests/test_restart.py",
        f"""
        import os
        from pathlib import Path
        import httpx

        MARKER = Path({str(marker)!r})

        def test_server_dies_once():
            if not MARKER.exists():
                MARKER.write_text(os.environ["DATA_DIR"])
                httpx.get(os.environ["TEST_BASE_URL"] + "/v1/die")
            assert os.environ["DATA_DIR"] != MARKER.read_text(), "a fresh DATA_DIR"
            ini = Path(os.environ["DATA_DIR"], "conf", "app.ini").read_text()
            assert "data = " + os.environ["DATA_DIR"] in ini
            settings = httpx.get(os.environ["TEST_BASE_URL"] + "/v1/x").json()["settings"]
            assert settings["data"] == os.environ["DATA_DIR"]
        """,
    )
    project.config(
        server="{python} server.py --config {data_dir}/conf/app.ini",
        health_path="/v1/health",
        files={"conf/app.ini": "config/app.ini.in"},
        workers=1,
    )

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.statuses == {"tests/test_restart.py::test_server_dies_once": "passed"}
    attempts = result.report["tests"][0]["attempts"]  # type: ignore[index]
    assert [a["status"] for a in attempts] == ["error", "passed"]
    project.assert_clean(result.run_id)


def test_command_runner_run_takes_placeholders(project: Project) -> None:
    project.write("server.py", SERVER)
    project.write(
        "check.sh",
        """
        #!/bin/sh
        # $1: the test id; $2: the worker's URL as the run template passed it
        test "$2" = "$TEST_BASE_URL/v1" || { echo "got $2"; exit 1; }
        test "$3" = "{literal}" || { echo "got $3"; exit 1; }
        echo "ran $1 against $2"
        """,
    )
    project.write("tests/.keep", "")
    project.config(
        server="{python} server.py --port {port}",
        health_path="/v1/health",
        runner="command",
        discover="printf 'a\\nb c\\n'",
        run="sh check.sh {id} {base_url}/v1 {{literal}}",
        workers=2,
    )

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.statuses == {"a": "passed", "b c": "passed"}
    project.assert_clean(result.run_id)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"server": "{python} server.py --port {prot}"},
            "testpool.toml: unknown placeholder {prot} in 'server': did you mean {port}?",
        ),
        (
            {"env": {"SERVER_URL": "{baseurl}/v1"}},
            "testpool.toml: unknown placeholder {baseurl} in 'env.SERVER_URL'",
        ),
        (
            {"files": {"app.ini": "config/app.ini.in"}},
            "testpool.toml: unknown placeholder {prot} in 'files.app.ini' "
            "(config/app.ini.in, line 2)",
        ),
        (
            {"files": {"../app.ini": "config/app.ini.in"}},
            "testpool.toml: 'files.../app.ini': the destination must be a path inside DATA_DIR",
        ),
        (
            {"files": {"app.ini": "config/missing.ini"}},
            "testpool.toml: 'files.app.ini': template not found: config/missing.ini",
        ),
    ],
)
def test_bad_placeholders_and_files_are_one_line_exit_2(
    project: Project, keys: dict[str, object], message: str
) -> None:
    project.write("config/app.ini.in", "[server]\nport = {prot}\n")
    project.write("tests/test_x.py", "def test_x():\n    pass\n")
    project.config(**keys)

    for args in ((), ("list",)):
        result = project.run(*args)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("testpool: error: " + message), lines
    project.assert_clean()


def test_editing_a_files_template_reruns_the_tests(project: Project) -> None:
    project.write("server.py", SERVER)
    project.write("config/app.ini.in", INI)
    project.write("tests/test_x.py", "def test_x():\n    pass\n")
    project.config(
        server="{python} server.py --config {data_dir}/app.ini",
        health_path="/v1/health",
        files={"app.ini": "config/app.ini.in"},
    )
    assert project.run().returncode == 0
    assert project.run("list").listing["tests/test_x.py::test_x"] == ("cached", "unchanged")

    project.write("config/app.ini.in", INI + "extra = 1\n")

    assert project.run("list").listing["tests/test_x.py::test_x"] == ("run", "data seed changed")
