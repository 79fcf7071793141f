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
        "--max-failures", "--exitfirst", "--fail-on-flaky", "--verbose", "--config",
        "TESTPOOL_WORKERS", "130",
    ):  # fmt: skip
        assert option in result.output, option


def test_subcommand_help() -> None:
    for command in ("clean", "list"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_workers_out_of_range_is_one_line_exit_2() -> None:
    code, out, err = invoke("--workers", "9")
    assert code == 2
    assert err.strip().splitlines() == [
        "testpool: error: Invalid value for '-w' / '--workers': 9 is not in the range 1<=x<=8."
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
            "testpool.toml: 'workers' must be an integer from 1 to 8, got str '4'",
        ),
        ('server = "x"\nworkers = 12\n', "testpool.toml: 'workers' must be from 1 to 8, got 12"),
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
