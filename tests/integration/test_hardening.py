"""What tests do to their processes, their DATA_DIR and the project's folders never makes
testpool lose time, delete a user's files, or leave anything behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest
from support import Project, wait_until

from testpool.runners.go_runner import find_go

BACKGROUND = """
case "$1" in
  list) printf 'bg.sh::in-group\\nbg.sh::own-session\\n' ;;
  bg.sh::in-group) echo "hello from in-group"; sleep 3600 & exit 0 ;;
  bg.sh::own-session) echo "hello from own-session"; setsid sleep 3600 & exit 0 ;;
esac
"""


def test_a_test_that_leaves_a_background_process_on_its_output_passes_at_once(
    project: Project,
) -> None:
    # The test's exit is the verdict: the background `sleep` holding the output pipe is not
    # waited for (not until the deadline, not for a grace period that loses the output).
    project.write("bg.sh", BACKGROUND)
    project.config(
        runner="command",
        tests=".",
        discover="sh bg.sh list",
        run="sh bg.sh {id}",
        test_timeout=120,
        workers=2,
    )

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.statuses == {"bg.sh::in-group": "passed", "bg.sh::own-session": "passed"}
    assert result.report is not None
    for test in result.report["tests"]:
        log = (project.root / test["log"]).read_text()
        assert f"hello from {test['id'].split('::')[1]}" in log, log
        assert test["duration"] < 60
    project.assert_clean(result.run_id)  # the setsid'd sleep carried the run id: stopped too


REPLACE_WITH_SYMLINK = """
import os, shutil
from pathlib import Path

def test_1_replaces_its_data_dir_with_a_symlink():
    data = Path(os.environ["DATA_DIR"])
    (data / "sub").mkdir()
    os.symlink({outside!r}, data / "sub" / "link")
    shutil.rmtree(data)
    os.symlink({outside!r}, data)

def test_2_gets_a_fresh_seeded_data_dir():
    data = Path(os.environ["DATA_DIR"])
    assert data.is_dir() and not data.is_symlink()
    assert (data / "seeded.txt").read_text() == "seed"
    (data / "sub").mkdir()
    os.symlink({outside!r}, data / "sub" / "link")
    (data / "sub").chmod(0o500)
    data.chmod(0o500)
"""


def test_reseeding_never_follows_a_symlink_the_test_left(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "users-own-folder"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    project.write("seed/seeded.txt", "seed")
    project.write("tests/test_data.py", REPLACE_WITH_SYMLINK.format(outside=str(outside)))
    project.config(workers=1, isolation="test", data_seed="seed")

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert (outside / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]
    project.assert_clean(result.run_id)
    assert not list(project.tmp.iterdir()), "no symlink, no folder of the run left"


def test_results_dir_in_the_project_root_keeps_the_users_logs(project: Project) -> None:
    project.write("logs/app.log", "the user's own log")
    project.write("logs/old-run/notes.txt", "not testpool's")
    project.write("tests/test_a.py", "def test_a():\n    print('hi')\n")
    project.config(results_dir=".", keep_logs=2)

    runs = [project.run("--full") for _ in range(3)]

    assert [r.returncode for r in runs] == [0, 0, 0]
    assert (project.root / "logs" / "app.log").read_text() == "the user's own log"
    assert (project.root / "logs" / "old-run" / "notes.txt").exists()
    kept = sorted(p.name for p in (project.root / "logs").iterdir() if p.name.startswith("20"))
    assert kept == sorted(r.run_id for r in runs[1:]), "the last 2 runs' logs are kept"
    last = runs[-1].report
    assert last is not None
    assert (project.root / last["tests"][0]["log"]).exists()
    project.assert_clean(*(r.run_id for r in runs))


def test_data_seed_symlinks_are_copied_as_their_contents(project: Project, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "counter").write_text("0")
    project.write("seed/plain.txt", "x")
    os.symlink(shared, project.root / "seed" / "linked")
    suite = """
import os
from pathlib import Path

def test_{n}():
    counter = Path(os.environ["DATA_DIR"]) / "linked" / "counter"
    assert not counter.parent.is_symlink()
    assert counter.read_text() == "0", "another worker wrote through a shared symlink"
    counter.write_text("1")
"""
    project.write("tests/test_seed.py", "".join(suite.format(n=n) for n in range(4)))
    project.config(workers=4, data_seed="seed")

    result = project.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert (shared / "counter").read_text() == "0"
    project.assert_clean(result.run_id)


def test_data_seed_with_a_dangling_symlink_is_a_config_error(project: Project) -> None:
    project.write("seed/plain.txt", "x")
    os.symlink(project.root / "nowhere", project.root / "seed" / "broken")
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.config(data_seed="seed")

    result = project.run()

    assert result.returncode == 2
    assert "data_seed" in result.stderr and "broken" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


GO_SLOW_PACKAGE = """
package e2e

import "testing"

func TestOne(t *testing.T) {}
"""


@pytest.mark.skipif(find_go() is None, reason="the go toolchain is not installed")
def test_run_stopped_while_go_compiles_leaves_no_go_build_folder(
    project: Project, tmp_path: Path
) -> None:
    project.write("e2e/go.mod", "module example.com/e2e\n\ngo 1.21\n")
    project.write("e2e/one_test.go", GO_SLOW_PACKAGE)
    project.config(runner="go", tests="e2e")
    # A cold build cache: compiling takes seconds, long enough to be stopped in the middle.
    project.extra_env["GOCACHE"] = str(tmp_path / "gocache")
    process = project.popen()
    wait_until(
        lambda: list(project.tmp.rglob("go-build*")), timeout=120, what="go to start building"
    )

    os.kill(process.pid, signal.SIGTERM)
    process.communicate(timeout=60)

    assert process.returncode == 130
    project.assert_clean()
    assert not list(project.tmp.rglob("go-build*"))
    assert not [
        p for p in psutil.process_iter(["name"]) if _env_of(p).get("TMPDIR") == str(project.tmp)
    ]


def _env_of(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}
