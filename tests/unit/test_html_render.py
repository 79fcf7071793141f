"""report.html rendered from plain run summaries: escaping, the embedded data, the timeline's
lanes, the failures' evidence, the page's policy, and a page of thousands of tests."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import time

import pytest

from testpool.report.html import embed_json, page_data, render_html, text
from testpool.results import (
    Attempt,
    DataDirEntry,
    Evidence,
    PhaseResult,
    RunSummary,
    Status,
    TestResult,
)

HOSTILE = [
    "t.py::test[<script>window.pwned=1</script>]",
    "t.py::test[quote\"'`]",
    "t.py::test[</script><img src=x onerror=alert(1)>]",
    "t.py::test[ctl\x00\x07\x1b[2J\x7f]",
    "t.py::test[unicode é☃ 日本 \u202e gnp.exe]",
    "t.py::test[surrogate \ud800]",
    "t.py::test[<!--]",
]


def failed(test_id: str, worker: int = 0, *, start: float = 1.0, origin: str = "") -> TestResult:
    evidence = Evidence(
        output=f"output of {test_id}\n</pre></script><b>bold</b>\x1b[31mred\x1b[0m",
        server_log="GET /health\nPOST /api/<script>\n",
        data_dir=(
            DataDirEntry("notes.json", "file", 12),
            DataDirEntry("<evil>/", "dir"),
            DataDirEntry("link", "link", 0, "/etc/<passwd>"),
        ),
        data_dir_total=3,
    )
    attempt = Attempt(
        worker, Status.FAILED, 0.5, start, start + 0.5, f"boom in {test_id}", origin,
        server_log=(10, 40), evidence=evidence,
    )  # fmt: skip
    return TestResult(
        test_id, "t.py", Status.FAILED, 0.5, worker, (attempt,), message=f"boom in {test_id}",
        origin=origin,
    )  # fmt: skip


def passed(test_id: str, worker: int = 0, start: float = 0.0) -> TestResult:
    attempt = Attempt(worker, Status.PASSED, 0.2, start, start + 0.2)
    return TestResult(
        test_id, "t.py", Status.PASSED, 0.2, worker, (attempt,), reason="not in cache"
    )


def summary(results: list[TestResult], **extra: object) -> RunSummary:
    base: dict[str, object] = {
        "run_id": "20261201120000-abcdef",
        "results": results,
        "wall_time": 3.0,
        "workers": 2,
        "started_at": "2026-12-01T12:00:00+00:00",
        "started_unix": 1000.0,
        "workers_detail": [{"worker": 0}, {"worker": 1}],
    }
    base.update(extra)
    return RunSummary(**base)  # type: ignore[arg-type]


def data_block(page: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="testpool-data">(.*?)</script>', page)
    assert found is not None
    return dict(json.loads(found.group(1)))


# --- escaping ---------------------------------------------------------------------------------


def test_hostile_ids_cannot_add_markup_or_script() -> None:
    page = render_html(summary([failed(test_id) for test_id in HOSTILE] + [passed("t.py::ok")]))
    page.encode("utf-8")  # a lone surrogate would make the file unwritable
    # Our three script elements and nothing else: no id opened or closed one.
    assert page.count("<script") == 3
    assert page.count("</script>") == 3
    assert "<img" not in page
    assert re.findall(r"<[a-z]+[^>]*onerror", page) == [], "no element got the attribute"
    assert "<evil>" not in page and "<b>bold</b>" not in page and "<!--" not in page
    for char in "\x00\x07\x1b\x7f\u202e":
        assert char not in page, repr(char)
    # Each id is shown, escaped, in its failure's summary line.
    for test_id in HOSTILE:
        assert f'<span class="id">{text(test_id)}</span>' in page
    assert '<span class="id">t.py::test[&lt;script&gt;window.pwned=1&lt;/script&gt;]</span>' in page
    assert "t.py::test[quote&quot;&#x27;`]" in page
    assert "t.py::test[ctl\\x00\\x07\\x1b[2J\\x7f]" in page
    assert "t.py::test[unicode é☃ 日本 \\u202e gnp.exe]" in page
    assert "t.py::test[surrogate \\ud800]" in page


def test_the_embedded_data_reads_back_whole() -> None:
    run = summary([failed(test_id) for test_id in HOSTILE])
    page = render_html(run)
    assert data_block(page) == json.loads(json.dumps(page_data(run)))
    tests = data_block(page)["tests"]
    assert isinstance(tests, list)
    assert [row[0] for row in tests][:2] == [HOSTILE[0], HOSTILE[1]]


@pytest.mark.parametrize(
    "value", ["</script>", "<!--", "<![CDATA[", "a & b", "\u2028", "</SCRIPT >"]
)
def test_embedded_json_holds_nothing_an_html_parser_reacts_to(value: str) -> None:
    raw = embed_json({"x": value})
    assert not set("<>&\u2028\u2029") & set(raw)
    assert json.loads(raw) == {"x": value}


def test_text_shows_control_characters_and_escapes_markup() -> None:
    assert text("<a href='x'>\x1b[1m") == "&lt;a href=&#x27;x&#x27;&gt;\\x1b[1m"


# --- the page's policy ------------------------------------------------------------------------


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def _found(pattern: str, page: str) -> str:
    match = re.search(pattern, page, re.S)
    assert match is not None, pattern
    return match.group(1)


def test_the_policy_allows_exactly_the_inline_script_and_style() -> None:
    page = render_html(summary([passed("t.py::ok")]))
    policy = html.unescape(_found(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page))
    script = _found(r"<script>(.*?)</script>", page)
    style = _found(r"<style>(.*?)</style>", page)
    assert f"script-src {_hash(script)};" in policy
    assert f"style-src {_hash(style)};" in policy
    assert policy.startswith("default-src 'none';")


def test_the_page_loads_nothing_from_anywhere() -> None:
    page = render_html(summary([failed("t.py::x http://example.com/a.js")]))
    assert re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"' >]*)""", page) == ["data:,"]
    assert "@import" not in page and "url(" not in page


def test_no_style_attribute_in_the_markup() -> None:
    # The policy allows none: a style="" would be refused (a console error) and not applied.
    page = render_html(summary([failed("t.py::a"), passed("t.py::b")]))
    assert " style=" not in page


# --- content ------------------------------------------------------------------------------------


def test_failures_and_flaky_tests_carry_their_attempts_evidence() -> None:
    flaky_attempts = (
        failed("t.py::flaky").attempts[0],
        Attempt(1, Status.PASSED, 0.1, 2.0, 2.1),
    )
    flaky = TestResult("t.py::flaky", "t.py", Status.FLAKY, 0.1, 1, flaky_attempts)
    run = summary([passed("t.py::ok"), failed("t.py::bad"), flaky])
    data = page_data(run)
    failures = data["failures"]
    assert set(failures) == {"1", "2"}, "the failed and the flaky test, not the passed one"
    first = failures["1"][0]
    assert first["server_log"] == "GET /health\nPOST /api/<script>\n"
    assert first["output"].endswith("<b>bold</b>red"), "escape sequences removed"
    assert first["data_dir"][2] == ["link", "link", 0, "/etc/<passwd>"]
    assert [a["status"] for a in failures["2"]] == ["failed", "passed"]
    assert "output" not in failures["2"][1], "a passing attempt keeps no evidence"
    page = render_html(run)
    assert "<h2>Failures (1 failed, 1 flaky)</h2>" in page
    # The evidence is in the data only: built when a failure is opened.
    assert "<pre" not in page


def test_lanes_are_per_worker_and_events_are_placed() -> None:
    run = summary(
        [passed("t.py::a", 0, 0.5), failed("t.py::b", 1, start=1.0), passed("t.py::c", 1, 2.0)],
        timed_events=[{"at": 1.6, "worker": 1, "text": "server died after failed test"}],
        workers_detail=[{"worker": 0, "ready": 0.45}, {"worker": 1}, {"worker": 2, "ready": 0.5}],
    )
    data = page_data(run)
    assert data["lanes"] == [
        {"origin": "", "worker": 0, "ready": 0.45, "bars": [[0, 0.5, 0.7, "passed"]]},
        {
            "origin": "",
            "worker": 1,
            "ready": 0.0,
            "bars": [[1, 1.0, 1.5, "failed"], [2, 2.0, 2.2, "passed"]],
        },
        {"origin": "", "worker": 2, "ready": 0.5, "bars": []},  # started, ran nothing
    ]
    assert data["events"] == [
        {
            "at": 1.6,
            "origin": "",
            "worker": 1,
            "service": "",
            "text": "server died after failed test",
        }
    ]


def test_a_merged_report_groups_lanes_by_origin_on_one_clock() -> None:
    run = summary(
        [passed("t.py::a", 0, 0.5), failed("t.py::b", 0, start=1.0, origin="shard 2/2")],
        parts=[
            {"origin": "shard 1/2", "started_unix": 1000.0},
            {"origin": "shard 2/2", "started_unix": 1004.0},
        ],
        workers_detail=[],
    )
    run.results[0] = TestResult(**{**run.results[0].__dict__, "origin": "shard 1/2"})
    lanes = page_data(run)["lanes"]
    assert [(lane["origin"], lane["worker"]) for lane in lanes] == [
        ("shard 1/2", 0),
        ("shard 2/2", 0),
    ]
    assert lanes[1]["bars"] == [[1, 5.0, 5.5, "failed"]], "shard 2 started 4 s later"
    assert "merged report" in render_html(run)


def test_summary_counts_phases_and_the_error() -> None:
    results = [passed("t.py::a"), failed("t.py::b")]
    results = [TestResult(**{**r.__dict__, "phase": "smoke"}) for r in results]
    run = summary(
        results,
        phases=[PhaseResult("smoke", "sequential", True, "failed", 2, 1.5)],
        error="service db failed to start <oops>",
        error_detail="line 1\n\x1b[31mline 2",
        error_exit=3,
    )
    page = render_html(run)
    assert "<b>1</b> passed</span>" in page and "<b>1</b> failed</span>" in page
    assert '<td class="id">smoke</td><td>failed</td><td>sequential, required</td>' in page
    assert "<td>1 passed, 1 failed</td>" in page
    assert "<h2>service db failed to start &lt;oops&gt;</h2>" in page
    assert "<pre>line 1\nline 2</pre>" in page
    assert '<span class="verdict bad">failed (exit 3)</span>' in page


def test_an_interrupted_and_a_green_run_say_so() -> None:
    assert '<span class="verdict stopped">interrupted</span>' in render_html(
        summary([passed("t.py::a")], interrupted=True)
    )
    green = render_html(summary([passed("t.py::a")]))
    assert '<span class="verdict ok">passed</span>' in green
    assert '<p class="muted">None.</p>' in green


def test_thousands_of_tests_render_quickly_and_lightly() -> None:
    results = [passed(f"t.py::test_{n}", n % 8, n * 0.01) for n in range(3000)]
    results += [failed(f"t.py::bad_{n}", n % 8, start=n * 0.01) for n in range(300)]
    run = summary(results)
    started = time.perf_counter()
    page = render_html(run)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s to render"
    # One element per failure up front; the 3,000 passing tests are data, not markup.
    assert page.count("<details") == 300 + 1
    assert page.count("<tr") < 20
