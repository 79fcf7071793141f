"""`testpool init` on real-looking projects: what it detects, what it writes (and never
overwrites), and that the configuration it writes runs."""

from __future__ import annotations

import json
import shutil
import tomllib

import pytest
from support import Project

from testpool.config import load_config

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node is not installed"
)

SERVER_JS = """
const http = require("http");
const server = http.createServer((req, res) => {
  if (req.url === "/api/health") { res.end("ok"); return; }
  res.statusCode = 404; res.end();
});
server.listen(Number(process.env.PORT || 8080), "127.0.0.1");
"""

PACKAGE_JSON = {"name": "shop", "scripts": {"start": "node server.js", "test": "jest"}}

PY_TEST = """
import os
import httpx

def test_health():
    assert httpx.get(os.environ["TEST_BASE_URL"] + "/api/health").text == "ok"
"""


def _node_project(project: Project) -> None:
    project.write("server.js", SERVER_JS)
    project.write("package.json", json.dumps(PACKAGE_JSON))
    project.write("lib/prices.js", "module.exports = {};\n")
    project.write("tests/e2e/test_health.py", PY_TEST)


@needs_node
def test_init_on_a_node_project_with_pytest_tests_writes_a_config_that_runs(
    project: Project,
) -> None:
    _node_project(project)

    result = project.run("init")

    assert result.returncode == 0, result.stderr
    written = (project.root / "testpool.toml").read_text()
    assert written == (
        'server = "npm start"\n'
        'tests = "tests/e2e"\n'
        'health_path = "/api/health"\n'
        'inputs = ["lib/**", "package.json", "server.js"]\n'
    )
    assert "server: package.json's 'start' script (node server.js)" in result.stdout
    assert (project.root / ".gitignore").read_text() == (
        "# testpool's reports and result cache\n/test-results/\n/.test-cache.json\n"
    )
    # What init wrote runs (with the test project's own ports).
    with (project.root / "testpool.toml").open("a") as handle:
        handle.write(f"port_base = {project.port_base}\n")
    run = project.run()
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.statuses == {"tests/e2e/test_health.py::test_health": "passed"}
    project.assert_clean(run.run_id)


PYPROJECT = """\
# a hand-written file: comments, odd spacing and no final line break are kept
[project]
name    =   "kinto-ish"
dependencies = [ "httpx" ]

[tool.ruff]
line-length = 99"""


def test_init_appends_to_pyproject_and_keeps_every_byte(project: Project) -> None:
    (project.root / "pyproject.toml").write_text(PYPROJECT)
    project.write("tests/test_api.py", "def test_api():\n    pass\n")
    project.write("app.py", 'ROUTES = {"/healthz": "ok"}\n')
    project.write(".gitignore", "node_modules\ntest-results/")

    result = project.run("init")

    assert result.returncode == 0, result.stderr
    text = (project.root / "pyproject.toml").read_text()
    assert text.startswith(PYPROJECT + "\n")
    assert text[len(PYPROJECT) :] == (
        '\n\n[tool.testpool]\nserver = "{python} app.py"\ntests = "tests"\n'
        'health_path = "/healthz"\ninputs = ["app.py"]\n'
    )
    config = load_config(project.root / "pyproject.toml")
    assert config.server == "{python} app.py" and config.health_path == "/healthz"
    assert tomllib.loads(text)["tool"]["ruff"] == {"line-length": 99}
    assert (project.root / ".gitignore").read_text() == (
        "node_modules\ntest-results/\n# testpool's reports and result cache\n/.test-cache.json\n"
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"pyproject.toml": '[project]\nname = "x"\n\n[tool.testpool]\nserver = "s"\n'},
            "testpool init: pyproject.toml already has [tool.testpool]: edit it, or remove it "
            "first",
        ),
        (
            {"testpool.toml": 'server = "s"\n'},
            "testpool init: testpool.toml already exists: edit it, or remove it first",
        ),
        (
            {"pyproject.toml": 'tool = { black = { line-length = 1 } }\n\n[project]\nname = "x"\n'},
            "testpool init: [tool.testpool] cannot be added at the end of pyproject.toml (its "
            "[tool] table is written inline): add the table by hand",
        ),
    ],
)
def test_init_never_overwrites_a_configuration(
    project: Project, files: dict[str, str], message: str
) -> None:
    project.write("tests/test_api.py", "def test_api():\n    pass\n")
    for name, text in files.items():
        project.write(name, text)

    result = project.run("init")

    assert result.returncode == 2
    assert result.stderr.strip() == f"testpool: error: {message}"
    for name, text in files.items():
        assert (project.root / name).read_text() == text
    assert not (project.root / ".gitignore").exists()


def test_init_without_tests_is_exit_2(project: Project) -> None:
    project.write("app.py", "")

    result = project.run("init")

    assert result.returncode == 2
    assert "testpool init: found no test files" in result.stderr
    assert not (project.root / "testpool.toml").exists()


def test_init_on_a_go_project(project: Project) -> None:
    project.write("go.mod", "module example.com/shop\n\ngo 1.21\n")
    project.write("cmd/migrate/main.go", "package main\n\nfunc main() {}\n")
    project.write(
        "cmd/devserver/main.go",
        'package main\n\nimport "net/http"\n\nfunc main() { http.HandleFunc("/healthz", nil) }\n',
    )
    project.write("internal/shop/shop.go", "package shop\n")
    project.write(
        "e2e/api_test.go", 'package e2e\n\nimport "testing"\n\nfunc TestA(t *testing.T) {}\n'
    )

    result = project.run("init")

    assert result.returncode == 0, result.stderr
    assert (project.root / "testpool.toml").read_text() == (
        'server = "go run ./cmd/devserver"\n'
        'tests = "e2e"\n'
        'runner = "go"\n'
        'health_path = "/healthz"\n'
        'inputs = ["cmd/**", "internal/**", "go.mod"]\n'
    )


def test_init_on_javascript_tests_uses_the_projects_test_tool(project: Project) -> None:
    project.write(
        "package.json",
        json.dumps({"scripts": {"dev": "vite"}, "devDependencies": {"jest": "^29"}}),
    )
    project.write("tests/cart.test.js", "test('x', () => {});\n")
    project.write("tests/checkout.spec.ts", "test('y', () => {});\n")
    project.write("tests/helpers.js", "")

    result = project.run("init")

    assert result.returncode == 0, result.stderr
    config = load_config(project.root / "testpool.toml")
    assert (config.runner, config.server, config.run) == ("command", "npm run dev", "npx jest {id}")
    assert config.health_path == "/"
    listed = project.run("list").listing
    assert listed == {
        "tests/cart.test.js": ("run", "not in cache"),
        "tests/checkout.spec.ts": ("run", "not in cache"),
    }


def test_a_command_runner_id_that_is_a_file_is_tied_to_it(project: Project) -> None:
    project.write("tests/a.test.sh", "exit 0\n")
    project.write("tests/b.test.sh", "exit 0\n")
    project.config(runner="command", discover="ls tests/*.test.sh", run="sh {id}")
    first = project.run()
    assert first.returncode == 0, first.stderr

    project.write("tests/b.test.sh", "true\nexit 0\n")

    assert project.run("list").listing == {
        "tests/a.test.sh": ("cached", "unchanged"),
        "tests/b.test.sh": ("run", "test file changed"),
    }
    project.assert_clean(first.run_id)


def test_go_tests_under_the_default_runner_say_to_set_runner_go(project: Project) -> None:
    project.write("go.mod", "module example.com/e2e\n\ngo 1.21\n")
    project.write(
        "tests/api_test.go", 'package e2e\n\nimport "testing"\n\nfunc TestA(t *testing.T) {}\n'
    )
    project.config()

    result = project.run("list")

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "testpool: error: 'tests' holds Go tests (*_test.go) and no Python: set "
        'runner = "go" (the runner is pytest unless the config says otherwise)'
    )
    project.assert_clean()
