"""report.html from real runs, opened in a real headless Chromium: it loads without a console
error, shows each failure with its output, its server's log while it ran and its DATA_DIR
after it, and no test id can put script into it. Also: the check itself fails on a page that
throws or that holds a script the page's policy does not allow."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from browser import Browser, page_data
from support import Project

from testpool.report.html import SCRIPT, render_html
from testpool.results import Attempt, RunSummary, Status, TestResult

SUITE = """
import os
from pathlib import Path

import httpx
import pytest

BASE = "TEST_BASE_URL"


def get(path):
    return httpx.get(os.environ[BASE] + path)


def test_ok():
    get("/sleep?ms=1&tag=tag-of-test-ok")


def test_writes_then_fails():
    httpx.post(os.environ[BASE] + "/bump")
    get("/sleep?ms=1&tag=tag-of-the-failing-test")
    data = Path(os.environ["DATA_DIR"])
    (data / "sub").mkdir(exist_ok=True)
    (data / "sub" / "x.txt").write_text("hello")
    if not (data / "link-to-etc").is_symlink():
        os.symlink("/etc", data / "link-to-etc")
    print("printed by the failing test: <b>not bold</b>")
    assert 6 * 7 == 41, "arithmetic is broken </script><script>window.__pwned = 4</script>"


def test_flaky(tmp_path_factory):
    get("/sleep?ms=1&tag=tag-of-the-flaky-test")
    marker = Path({marker!r})
    if not marker.exists():
        marker.write_text("failed once")
        raise AssertionError("fails the first time")


@pytest.mark.parametrize("name", {hostile!r})
def test_hostile(name):
    get("/sleep?ms=1&tag=tag-of-a-hostile-test")
    assert False, name
"""

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '"><img src=x onerror="window.__pwned = 2">',
    "</script><script>window.__pwned = 3</script>",
    "esc\x1b[2J",
    "unicode é☃ 日本",
]


def _failure_text(browser: Browser, fragment: str, part: str) -> str:
    """Open the failure whose id contains ``fragment``; the text of ``part`` in it."""
    return str(
        browser.evaluate(
            f"""(() => {{
              const all = [...document.querySelectorAll("details.failure")];
              const it = all.find(d => d.querySelector(".id").textContent.includes({fragment!r}));
              it.open = true;
              it.dispatchEvent(new Event("toggle"));
              return it.querySelector({part!r}).innerText;
            }})()"""
        )
    )


def test_a_runs_report_in_a_real_browser(
    project: Project, browser: Browser, tmp_path: Path
) -> None:
    marker = tmp_path / "flaky-marker"
    project.write("tests/test_app.py", SUITE.format(marker=str(marker), hostile=HOSTILE))
    # pytest's ids as written: unicode and control characters too, not escaped by pytest.
    project.write(
        "pytest.ini",
        "[pytest]\ndisable_test_id_escaping_and_forfeit_all_rights_to_community_support = true\n",
    )
    project.config(workers=2)

    result = project.run("--retries", "1")

    assert result.returncode == 1, result.stdout + result.stderr
    page = project.root / "test-results" / "report.html"
    assert "test-results/report.html" in result.stdout
    # The failing attempt's evidence in report.json: its own server log lines, and no other
    # test's (they ran before or after it, or on the other worker), and its DATA_DIR.
    assert result.report is not None
    failing = next(t for t in result.report["tests"] if t["id"].endswith("test_writes_then_fails"))
    attempt = failing["attempts"][0]  # of two: --retries 1 runs it again
    assert [a["status"] for a in failing["attempts"]] == ["failed", "failed"]
    evidence = attempt["evidence"]
    assert "POST /bump" in evidence["server_log"]
    assert "tag-of-the-failing-test" in evidence["server_log"]
    assert "tag-of-" not in evidence["server_log"].replace("tag-of-the-failing-test", "")
    log = project.worker_log(result, attempt["worker"]).read_bytes()
    span = attempt["server_log"]
    assert b"tag-of-the-failing-test" in log[span["start"] : span["end"]]
    listing = {e["path"]: e for e in evidence["data_dir"]}
    assert listing["sub/x.txt"] == {"path": "sub/x.txt", "kind": "file", "size": 5}
    assert listing["link-to-etc"] == {
        "path": "link-to-etc",
        "kind": "link",
        "size": 0,
        "target": "/etc",
    }
    assert not any(p.startswith("link-to-etc/") for p in listing), "the link is not followed"
    assert "counter" in listing, "the server's own file (POST /bump)"
    assert "printed by the failing test" in evidence["output"]

    loaded = browser.open(page)

    assert loaded.errors == []
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.scripts.length") == 3
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    shown = browser.evaluate(
        "[...document.querySelectorAll('details.failure .id')].map(e => e.textContent)"
    )
    assert sorted(shown) == sorted(
        [
            "tests/test_app.py::test_writes_then_fails",
            "tests/test_app.py::test_flaky",
            *(f"tests/test_app.py::test_hostile[{name}]" for name in HOSTILE[:3]),
            "tests/test_app.py::test_hostile[esc\\x1b[2J]",
            "tests/test_app.py::test_hostile[unicode é☃ 日本]",
        ]
    )
    assert "<b>not bold</b>" in _failure_text(browser, "test_writes_then_fails", "pre.output")
    server_log = _failure_text(browser, "test_writes_then_fails", "pre.server-log")
    assert "POST /bump" in server_log and "tag-of-the-failing-test" in server_log
    rows = _failure_text(browser, "test_writes_then_fails", "table")
    assert "sub/x.txt\tfile\t5" in rows
    assert "link-to-etc → /etc\tlink" in rows
    flaky = _failure_text(browser, "test_flaky", ".body")
    assert "attempt 1, worker" in flaky and "fails the first time" in flaky
    assert "attempt 2, worker" in flaky and ": passed in" in flaky
    assert _failure_text(browser, "window.__pwned = 1", "pre.output").count("__pwned = 1") >= 1
    # The timeline: one lane per worker, a bar per attempt (the flaky test's two included).
    bars = browser.evaluate("document.querySelectorAll('#timeline .bar').length")
    attempts = sum(len(t["attempts"]) for t in result.report["tests"])
    assert bars == attempts == 1 + 2 + 2 + 2 * len(HOSTILE)
    assert browser.evaluate("document.querySelectorAll('#timeline .lane').length") == 2
    # Opening the table of every test builds it, with the filter working.
    count = browser.evaluate(
        """(() => { const all = document.getElementById("all-tests"); all.open = true;
           all.dispatchEvent(new Event("toggle"));
           const f = document.getElementById("filter"); f.value = "hostile";
           f.dispatchEvent(new Event("input"));
           return document.querySelectorAll("#rows tr").length; })()"""
    )
    assert count == len(HOSTILE)
    project.assert_clean(result.run_id)


def _fake_page(tmp_path: Path, script: str = SCRIPT) -> Path:
    attempt = Attempt(0, Status.FAILED, 0.1, 0.0, 0.1, "boom")
    summary = RunSummary(
        run_id="r",
        results=[TestResult("t.py::x", "t.py", Status.FAILED, 0.1, 0, (attempt,), message="boom")],
        wall_time=1.0,
        workers=1,
        started_at="2026-12-01T12:00:00+00:00",
    )
    page = tmp_path / "report.html"
    import testpool.report.html as html_module

    original = html_module.SCRIPT
    html_module.SCRIPT = script
    try:
        page.write_text(render_html(summary))
    finally:
        html_module.SCRIPT = original
    return page


def test_the_browser_check_fails_on_a_script_error(browser: Browser, tmp_path: Path) -> None:
    clean = browser.open(_fake_page(tmp_path))
    assert clean.errors == []

    broken = _fake_page(tmp_path, SCRIPT.replace('"use strict";', '"use strict"; notAFunction();'))
    loaded = browser.open(broken)

    assert any("notAFunction is not defined" in error for error in loaded.errors), loaded.errors
    assert "the page's script did not finish (data-ready is not set)" in loaded.errors


def test_a_script_the_policy_does_not_allow_never_runs_and_is_reported(
    browser: Browser, tmp_path: Path
) -> None:
    page = _fake_page(tmp_path)
    # As if some text had escaped its escaping: an inline script of someone else's.
    text = page.read_text()
    page.write_text(text.replace("</main>", "</main><script>window.__pwned = 5</script>"))

    loaded = browser.open(page)

    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert any("Content Security Policy" in error for error in loaded.errors), loaded.errors


def test_a_merged_report_groups_the_timeline_by_shard(project: Project, browser: Browser) -> None:
    for n in range(4):
        project.write(f"tests/test_{n}.py", f"def test_{n}():\n    pass\n")
    project.write(
        "tests/test_bad.py", "def test_bad():\n    print('said the bad test')\n    assert 0\n"
    )
    project.config(workers=1)
    for index in (1, 2):
        result = project.run("--shard", f"{index}/2")
        assert result.returncode in (0, 1), result.stderr
        shutil.copytree(project.root / "test-results", project.root / f"shard-{index}")
        project.assert_clean(result.run_id)

    merged = project.run("merge-reports", "shard-1", "shard-2", "-o", "merged")

    assert merged.returncode == 1, merged.stdout + merged.stderr
    page = project.root / "merged" / "report.html"
    data = page_data(page)
    assert [(lane["origin"], lane["worker"]) for lane in data["lanes"]] == [
        ("shard 1/2", 0),
        ("shard 2/2", 0),
    ]
    loaded = browser.open(page)
    assert loaded.errors == []
    origins = browser.evaluate(
        "[...document.querySelectorAll('#timeline .origin')].map(e => e.textContent)"
    )
    assert origins == ["shard 1/2", "shard 2/2"]
    # The failure's output travelled through the shard's report.json into the merged page.
    assert "said the bad test" in _failure_text(browser, "test_bad", "pre.output")
    assert re.search(r"merged report \d{14}-", page.read_text())
