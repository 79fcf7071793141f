"""The result cache, end to end: skip only what provably did not change."""

from __future__ import annotations

import json
import subprocess

from support import DEVSERVER, Project


def _suite(project: Project) -> None:
    """Two test files, a helper, a server source under `inputs`, and a seed folder."""
    project.write("app/server_source.py", "VERSION = 1\n")
    project.write("seed/sites.jsonc", "[]\n")
    project.write("tests/helpers.py", "GREETING = 'hi'\n")
    project.write(
        "tests/conftest.py", "import sys, os\nsys.path.insert(0, os.path.dirname(__file__))\n"
    )
    project.write(
        "tests/test_alpha.py",
        "from helpers import GREETING\n\ndef test_a1():\n    assert GREETING\n\ndef test_a2():\n    pass\n",
    )
    project.write("tests/test_beta.py", "def test_b1():\n    pass\n\ndef test_b2():\n    pass\n")
    project.config(workers=2, inputs=["app/**"], data_seed="seed")


ALL = {
    "tests/test_alpha.py::test_a1",
    "tests/test_alpha.py::test_a2",
    "tests/test_beta.py::test_b1",
    "tests/test_beta.py::test_b2",
}


def _ran(result_statuses: dict[str, str]) -> set[str]:
    return {test for test, status in result_statuses.items() if status != "cached"}


def test_second_run_skips_everything_and_starts_no_worker(project: Project) -> None:
    _suite(project)
    first = project.run()
    assert first.returncode == 0 and _ran(first.statuses) == ALL

    second = project.run()

    assert second.returncode == 0
    assert set(second.statuses.values()) == {"cached"}
    assert second.report is not None and second.report["workers"] == 0
    assert "all 4 tests cached" in second.stdout
    assert "no worker started" in second.stdout
    project.assert_clean(first.run_id, second.run_id)


def test_editing_one_test_file_reruns_exactly_its_tests(project: Project) -> None:
    _suite(project)
    project.run()
    with (project.root / "tests" / "test_beta.py").open("a") as handle:
        handle.write("\n# edited\n")

    listed = project.run("list").listing
    assert listed["tests/test_beta.py::test_b1"] == ("run", "test file changed")
    assert listed["tests/test_beta.py::test_b2"] == ("run", "test file changed")
    assert listed["tests/test_alpha.py::test_a1"] == ("cached", "unchanged")
    result = project.run()

    assert _ran(result.statuses) == {"tests/test_beta.py::test_b1", "tests/test_beta.py::test_b2"}


def test_editing_a_helper_reruns_the_tests_that_import_it(project: Project) -> None:
    _suite(project)
    project.run()
    project.write("tests/helpers.py", "GREETING = 'hello'\n")
    listed = project.run("list").listing
    assert listed["tests/test_alpha.py::test_a1"] == ("run", "shared test code changed")
    assert listed["tests/test_beta.py::test_b1"] == ("cached", "unchanged")
    assert _ran(project.run().statuses) == {
        "tests/test_alpha.py::test_a1",
        "tests/test_alpha.py::test_a2",
    }


def test_editing_a_data_file_or_the_conftest_reruns_everything(project: Project) -> None:
    _suite(project)
    project.write("tests/data/sample.json", "{}\n")
    project.run()
    project.write("tests/data/sample.json", '{"a": 1}\n')
    assert {v for v in project.run("list").listing.values()} == {("run", "helpers changed")}
    assert _ran(project.run().statuses) == ALL
    with (project.root / "tests" / "conftest.py").open("a") as handle:
        handle.write("# edited\n")
    assert {v for v in project.run("list").listing.values()} == {
        ("run", "shared test code changed")
    }


def test_editing_a_server_source_reruns_everything(project: Project) -> None:
    _suite(project)
    project.run()
    project.write("app/server_source.py", "VERSION = 2\n")
    assert {v for v in project.run("list").listing.values()} == {("run", "inputs changed")}
    assert _ran(project.run().statuses) == ALL


def test_without_inputs_an_edited_server_still_reruns_everything(project: Project) -> None:
    """Regression: a configuration without `inputs` hashed no server source, so an edited
    server (here its own script, and a source folder) left every passing test cached."""
    _suite(project)
    project.write("server.py", (DEVSERVER).read_text())
    project.config(workers=2, data_seed="seed", server="{python} server.py")
    assert project.run().returncode == 0
    assert set(project.run("list").listing.values()) == {("cached", "unchanged")}
    project.write("server.py", DEVSERVER.read_text() + "\n# edited\n")
    assert set(project.run("list").listing.values()) == {("run", "inputs changed")}
    assert _ran(project.run().statuses) == ALL
    project.write("app/server_source.py", "VERSION = 3\n")
    assert set(project.run("list").listing.values()) == {("run", "inputs changed")}


def test_editing_the_seed_or_the_server_command_reruns_everything(project: Project) -> None:
    _suite(project)
    project.run()
    project.write("seed/sites.jsonc", '[{"name": "x"}]\n')
    assert {v for v in project.run("list").listing.values()} == {("run", "data seed changed")}
    assert _ran(project.run().statuses) == ALL

    project.config(
        workers=2,
        inputs=["app/**"],
        data_seed="seed",
        server=f"{{python}} {DEVSERVER} --slow-start",
    )
    assert {v for v in project.run("list").listing.values()} == {("run", "config changed")}
    assert _ran(project.run().statuses) == ALL


def test_a_previously_failed_test_reruns(project: Project) -> None:
    _suite(project)
    project.write("tests/test_gamma.py", "def test_g():\n    assert False\n")
    assert project.run().returncode == 1
    result = project.run()
    assert result.returncode == 1
    assert _ran(result.statuses) == {"tests/test_gamma.py::test_g"}
    assert project.run("list").listing["tests/test_gamma.py::test_g"] == (
        "run",
        "previously failed",
    )


def test_full_reruns_everything_and_records(project: Project) -> None:
    _suite(project)
    first = project.run()
    before = project.cache()["tests"]["tests/test_beta.py::test_b1"]["ran_at"]
    full = project.run("--full")
    assert _ran(full.statuses) == ALL
    assert project.cache()["tests"]["tests/test_beta.py::test_b1"]["ran_at"] > before
    assert first.returncode == full.returncode == 0


def test_subset_run_after_a_change_leaves_the_others_to_run(project: Project) -> None:
    _suite(project)
    project.run()
    project.write("app/server_source.py", "VERSION = 3\n")

    subset = project.run("--file", "test_alpha")
    assert _ran(subset.statuses) == {"tests/test_alpha.py::test_a1", "tests/test_alpha.py::test_a2"}

    listed = project.run("list").listing
    assert listed["tests/test_alpha.py::test_a1"] == ("cached", "unchanged")
    assert listed["tests/test_beta.py::test_b1"] == ("run", "inputs changed")
    assert _ran(project.run().statuses) == {
        "tests/test_beta.py::test_b1",
        "tests/test_beta.py::test_b2",
    }


def test_two_concurrent_runs_keep_each_others_results(project: Project) -> None:
    _suite(project)
    # Two configs differing only in ports, sharing the project and its cache file.
    project.config(workers=1, inputs=["app/**"], data_seed="seed")
    text = (project.root / "testpool.toml").read_text()
    other = text.replace(f"port_base = {project.port_base}", f"port_base = {project.port_base + 4}")
    (project.root / "other.toml").write_text(other)
    # Same config digest either way: port_base is not something a test result depends on.
    alpha = subprocess.Popen(
        project.command("-f", "test_alpha"), cwd=project.root, env=project.env()
    )
    beta = subprocess.Popen(
        project.command("-f", "test_beta", "--config", "other.toml"),
        cwd=project.root,
        env=project.env(),
    )
    assert alpha.wait(timeout=120) == 0
    assert beta.wait(timeout=120) == 0

    assert set(project.cache()["tests"]) == ALL
    assert set(project.run().statuses.values()) == {"cached"}


def test_truncated_cache_warns_and_runs_normally(project: Project) -> None:
    _suite(project)
    project.run()
    cache = project.root / ".test-cache.json"
    cache.write_text(cache.read_text()[:100])

    result = project.run()

    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "is corrupt" in warnings[0]
    assert _ran(result.statuses) == ALL
    assert set(json.loads(cache.read_text())["tests"]) == ALL, "the run rewrote the cache"
    assert "Traceback" not in result.stderr


def test_two_first_runs_at_once_with_secrets_agree_on_the_salt(project: Project) -> None:
    """Each run's test waits until the other run's test has started, so both runs have made
    their secrets digest before either records a result."""
    project.write(".env.test", "SECRET_TOKEN=first-run-secret\n")
    meet = """
        import time
        from pathlib import Path

        def test_meet():
            Path({mine!r}).touch()
            deadline = time.monotonic() + 60
            while not Path({theirs!r}).exists():
                assert time.monotonic() < deadline, "the other run never started its test"
                time.sleep(0.02)
        """
    a, b = str(project.tmp / "a-started"), str(project.tmp / "b-started")
    project.write("tests/test_a.py", meet.format(mine=a, theirs=b))
    project.write("tests/test_b.py", meet.format(mine=b, theirs=a))
    project.config(secrets=[".env.test"])
    # Same project and cache; its own ports and reports (as the README asks of two runs).
    alt = (project.root / "testpool.toml").read_text()
    alt = alt.replace(f"port_base = {project.port_base}", f"port_base = {project.port_base + 4}")
    (project.root / "alt.toml").write_text(alt + 'results_dir = "alt-results"\n')

    first = project.popen("-f", "test_a.py")
    second = project.popen("--config", "alt.toml", "-f", "test_b.py")
    out_1, err_1 = first.communicate(timeout=180)
    out_2, err_2 = second.communicate(timeout=180)

    assert first.returncode == 0, out_1 + err_1
    assert second.returncode == 0, out_2 + err_2
    listing = project.run("list").listing
    assert listing == {
        "tests/test_a.py::test_meet": ("cached", "unchanged"),
        "tests/test_b.py::test_meet": ("cached", "unchanged"),
    }
    project.assert_clean()
