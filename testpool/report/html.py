"""``report.html``: one self-contained page for a person (a CI artifact, or opened from disk).

Pure: :func:`render_html` is a function of the run summary. The page needs no network: its CSS
and script are inline and allowed by hash in its Content-Security-Policy, which allows nothing
else (no request can leave the page, and no script but ours can run even if some text escaped
its escaping). Everything that comes from elsewhere (ids, messages, output, logs, paths) is
either HTML-escaped here or embedded as JSON (with ``<``, ``>`` and ``&`` escaped, so nothing
in it can end the script element) and put into the page by the script with ``textContent``,
never as markup.

What the page holds: the counts by status and by phase; a timeline of every worker (grouped by
machine or shard in a merged report) with each attempt and the infrastructure events; every
failure (``failed``, ``timeout``, ``error``, and ``flaky`` ones) with, for each failed attempt,
its output, the slice of its worker's server log written while it ran, and its ``DATA_DIR``
listing after it. Heavy parts are built only when opened (a failure's details, the table of
every test), so a page of thousands of tests opens at once.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections import Counter
from typing import Any

from testpool import __version__
from testpool.results import STATUS_ORDER, Attempt, RunSummary, Status, TestResult
from testpool.sanitize import block, inline

HTML = "report.html"
MESSAGE_LIMIT = 300  # characters of a failure's message in its one-line summary
_SURROGATES = re.compile("[\ud800-\udfff]")
# In JSON embedded in a <script> element: nothing may close it, open a comment, or be read
# as a character reference. U+2028/2029 are valid JSON but were line ends in old JavaScript.
_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def text(value: str) -> str:
    """One line of someone else's text, ready for HTML: control characters shown as escapes
    (``\\x1b``), lone surrogates too (UTF-8 cannot carry them), then HTML-escaped."""
    return html.escape(_no_surrogates(inline(value)), quote=True)


def _no_surrogates(value: str) -> str:
    return _SURROGATES.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


# What inline() or block() would change, or a lone surrogate: most text has none (a quick
# check keeps a page of thousands of tests quick to write).
_SPECIAL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _line(value: str) -> str:
    return _no_surrogates(inline(value)) if _SPECIAL.search(value) else value


def _block(value: str) -> str:
    return _no_surrogates(block(value))


def embed_json(document: Any) -> str:
    """``document`` as JSON that can sit inside ``<script type="application/json">``."""
    raw = json.dumps(document, ensure_ascii=True, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], raw)


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# --- the data the script reads ------------------------------------------------------------------


def _is_reported_failure(result: TestResult) -> bool:
    return result.status.is_failure or result.status is Status.FLAKY


def _attempt_data(attempt: Attempt) -> dict[str, Any]:
    data: dict[str, Any] = {
        "worker": attempt.worker,
        "status": attempt.status.value,
        "duration": round(attempt.duration, 4),
        "message": _line(attempt.message),
    }
    if attempt.origin:
        data["origin"] = _line(attempt.origin)
    evidence = attempt.evidence
    if evidence is not None:
        data["output"] = _block(evidence.output)
        data["server_log"] = _block(evidence.server_log)
        data["data_dir"] = [
            [_line(e.path), e.kind, e.size, _line(e.target)] for e in evidence.data_dir
        ]
        data["data_dir_total"] = evidence.data_dir_total
        data["data_dir_note"] = _line(evidence.data_dir_note)
        data["truncated"] = list(evidence.truncated)
    return data


def page_data(summary: RunSummary) -> dict[str, Any]:
    """What the page's script draws: the tests (compact rows), the timeline and the failures'
    details. Every string is already made displayable (control characters escaped)."""
    offsets = _origin_offsets(summary)
    tests = []
    lanes: dict[tuple[str, int], list[list[Any]]] = {}
    failures: dict[str, list[dict[str, Any]]] = {}
    for index, result in enumerate(summary.results):
        tests.append(
            [
                _line(result.id),
                result.status.value,
                round(result.duration, 4),
                result.worker,
                _line(result.phase or ""),
                _line(result.origin),
                _line(result.reason),
                _line(result.message),
            ]
        )
        for attempt in result.attempts:
            origin = attempt.origin or result.origin
            shift = offsets.get(origin, 0.0)
            lanes.setdefault((origin, attempt.worker), []).append(
                [
                    index,
                    round(attempt.started + shift, 3),
                    round(max(attempt.finished, attempt.started) + shift, 3),
                    attempt.status.value,
                ]
            )
        if _is_reported_failure(result):
            failures[str(index)] = [_attempt_data(a) for a in result.attempts]
    ready: dict[tuple[str, int], float] = {}
    for detail in summary.workers_detail:
        if isinstance(detail.get("worker"), int):
            lanes.setdefault(("", detail["worker"]), [])
            if isinstance(detail.get("ready"), int | float) and detail["ready"] > 0:
                ready[("", detail["worker"])] = round(float(detail["ready"]), 3)
    events = []
    for event in summary.timed_events:
        try:
            at = float(event.get("at", 0.0)) + offsets.get(str(event.get("origin", "")), 0.0)
        except (TypeError, ValueError):
            continue
        events.append(
            {
                "at": round(at, 3),
                "origin": _line(str(event.get("origin", ""))),
                "worker": event.get("worker") if isinstance(event.get("worker"), int) else None,
                "service": _line(str(event.get("service", ""))),
                "text": _line(str(event.get("text", ""))),
            }
        )
    return {
        "tests": tests,
        "lanes": [
            {
                "origin": _line(origin),
                "worker": worker,
                "ready": ready.get((origin, worker), 0.0),  # its start-up, drawn grey
                "bars": bars,
            }
            for (origin, worker), bars in sorted(lanes.items(), key=lambda item: item[0])
        ],
        "events": events,
        "failures": failures,
        "wall": round(summary.wall_time, 3),
    }


def _origin_offsets(summary: RunSummary) -> dict[str, float]:
    """Seconds from the merged run's start to each part's (attempt times are relative to
    their own part's start); 0 where it is not known."""
    offsets: dict[str, float] = {}
    for part in summary.parts:
        start = part.get("started_unix") or part.get("first_seen")
        if isinstance(start, int | float) and summary.started_unix and start:
            offsets[str(part.get("origin", ""))] = max(0.0, float(start) - summary.started_unix)
    return offsets


# --- the page ---------------------------------------------------------------------------------

COLORS = {
    Status.PASSED: "#2e9d5b",
    Status.FAILED: "#d93838",
    Status.TIMEOUT: "#e0672a",
    Status.ERROR: "#b8399a",
    Status.FLAKY: "#d9a21b",
    Status.SKIPPED: "#4c94b8",
    Status.CACHED: "#9fcfb0",
    Status.NOT_RUN: "#b5b9c0",
}

STYLE = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg:#fff;--soft:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--soft)}
header{background:#24292f;color:#fff;padding:14px 24px;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0;font-weight:600}
header .meta{color:#c9d1d9;font-size:13px}
.verdict{padding:3px 10px;border-radius:12px;font-weight:600;font-size:13px}
.verdict.ok{background:#2e9d5b}.verdict.bad{background:#d93838}.verdict.stopped{background:#9a6700}
main{max-width:1280px;margin:0 auto;padding:16px 24px 48px}
section{background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:15px;margin:0 0 10px}
.error{border-color:#d93838;background:#fff5f5}
.error pre{margin:8px 0 0}
.chips{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:10px}
.chip{border:1px solid var(--line);border-radius:16px;padding:2px 10px 2px 8px;display:inline-flex;gap:6px;align-items:center}
.dot{width:10px;height:10px;border-radius:50%;display:inline-block;flex:none}
.stack{display:flex;height:10px;border-radius:5px;overflow:hidden;background:var(--soft)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 7px;border-radius:10px;color:#fff;font-size:12px;font-weight:600;white-space:nowrap}
.id{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;word-break:break-all}
.muted{color:var(--muted)}
.lane{display:flex;align-items:center;gap:8px;margin:3px 0}
.lane .label{width:120px;flex:none;font-size:12px;color:var(--muted);text-align:right;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.track{position:relative;flex:1;height:18px;background:var(--soft);border-radius:3px}
.bar{position:absolute;top:2px;height:14px;border-radius:2px;min-width:2px;cursor:pointer;opacity:.9}
.bar:hover{opacity:1;outline:1px solid #000}
.startup{position:absolute;left:0;top:6px;height:6px;border-radius:3px;background:#c9d1d9}
.mark{position:absolute;top:-2px;width:3px;height:22px;background:#1f2328;border-radius:1px}
.axis{position:relative;height:16px;margin-left:128px;font-size:11px;color:var(--muted)}
.axis span{position:absolute;transform:translateX(-50%)}
.origin{font-weight:600;margin:10px 0 2px}
details.failure{border:1px solid var(--line);border-radius:6px;margin:6px 0;background:var(--bg)}
details.failure>summary{padding:7px 10px;cursor:pointer;display:flex;gap:10px;align-items:baseline;flex-wrap:wrap}
details.failure[open]>summary{border-bottom:1px solid var(--line);background:var(--soft)}
.body{padding:8px 12px}
.attempt h3{font-size:13px;margin:10px 0 4px}
.attempt h4{font-size:12px;margin:8px 0 2px;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
pre{background:#0d1117;color:#e6edf3;padding:8px 10px;border-radius:6px;overflow:auto;max-height:420px;margin:0;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all}
.controls{display:flex;gap:8px;margin:8px 0}
input,select{font:inherit;padding:4px 8px;border:1px solid var(--line);border-radius:6px}
input{flex:1}
footer{color:var(--muted);font-size:12px;text-align:center}
summary h2{display:inline;margin:0}
#all-tests>summary{cursor:pointer}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("testpool-data").textContent);
  var COLORS = JSON.parse(document.getElementById("testpool-colors").textContent);
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function secs(value) { return (Math.round(value * 100) / 100).toFixed(2) + "s"; }
  function badge(status) {
    var node = el("span", "badge", status);
    node.style.background = COLORS[status] || "#888";
    return node;
  }
  function pct(value, total) { return Math.max(0, Math.min(100, (value / total) * 100)); }

  // --- timeline ---------------------------------------------------------------------------
  function drawTimeline() {
    var host = document.getElementById("timeline");
    if (!host) return;
    var total = data.wall || 0;
    data.lanes.forEach(function (lane) {
      lane.bars.forEach(function (bar) { total = Math.max(total, bar[2]); });
    });
    data.events.forEach(function (event) { total = Math.max(total, event.at); });
    if (total <= 0) total = 1;
    var axis = el("div", "axis");
    for (var i = 0; i <= 4; i++) {
      var tick = el("span", "", secs(total * i / 4));
      tick.style.left = (i * 25) + "%";
      axis.appendChild(tick);
    }
    var lastOrigin = null;
    data.lanes.forEach(function (lane) {
      if (lane.origin !== lastOrigin && (lane.origin || lastOrigin !== null)) {
        host.appendChild(el("div", "origin", lane.origin || "this machine"));
      }
      lastOrigin = lane.origin;
      var row = el("div", "lane");
      row.appendChild(el("div", "label", "worker " + lane.worker));
      var track = el("div", "track");
      if (lane.ready > 0) {
        var start = el("div", "startup");
        start.style.width = pct(lane.ready, total) + "%";
        start.title = "worker " + lane.worker + " starting: its server and its test process, " +
          "ready after " + secs(lane.ready);
        track.appendChild(start);
      }
      lane.bars.forEach(function (bar) {
        var test = data.tests[bar[0]];
        var node = el("div", "bar");
        node.style.left = pct(bar[1], total) + "%";
        node.style.width = Math.max(0.15, pct(bar[2] - bar[1], total)) + "%";
        node.style.background = COLORS[bar[3]] || "#888";
        node.title = test[0] + "\n" + bar[3] + " in " + secs(bar[2] - bar[1]) +
          " (from " + secs(bar[1]) + ")";
        node.addEventListener("click", function () { reveal(bar[0]); });
        track.appendChild(node);
      });
      data.events.forEach(function (event) {
        if (event.worker === lane.worker && event.origin === lane.origin) {
          var mark = el("div", "mark");
          mark.style.left = pct(event.at, total) + "%";
          mark.title = secs(event.at) + ": worker " + lane.worker + ": " + event.text;
          track.appendChild(mark);
        }
      });
      row.appendChild(track);
      host.appendChild(row);
    });
    var services = data.events.filter(function (event) { return event.service; });
    if (services.length) {
      var row = el("div", "lane");
      row.appendChild(el("div", "label", "services"));
      var track = el("div", "track");
      services.forEach(function (event) {
        var mark = el("div", "mark");
        mark.style.left = pct(event.at, total) + "%";
        mark.title = secs(event.at) + ": service " + event.service + ": " + event.text;
        track.appendChild(mark);
      });
      row.appendChild(track);
      host.appendChild(row);
    }
    if (!data.lanes.length) {
      host.appendChild(el("p", "muted", "No test ran on a worker in this run."));
    } else {
      host.appendChild(axis);
    }
  }

  // --- failures: details built when opened -------------------------------------------------
  function section(parent, title, content) {
    parent.appendChild(el("h4", "", title));
    parent.appendChild(content);
  }
  function listing(rows, total, note) {
    var wrap = el("div");
    if (!rows.length) {
      wrap.appendChild(el("p", "muted", note || "empty"));
      return wrap;
    }
    var table = el("table");
    var head = el("tr");
    ["path", "kind", "size"].forEach(function (name, i) {
      head.appendChild(el("th", i === 2 ? "num" : "", name));
    });
    table.appendChild(head);
    rows.forEach(function (row) {
      var tr = el("tr");
      tr.appendChild(el("td", "id", row[0] + (row[1] === "link" ? " \u2192 " + row[3] : "")));
      tr.appendChild(el("td", "", row[1] === "unreadable" && row[3] ? row[1] + " (" + row[3] + ")" : row[1]));
      tr.appendChild(el("td", "num", row[1] === "file" ? String(row[2]) : ""));
      table.appendChild(tr);
    });
    wrap.appendChild(table);
    if (note || total > rows.length) {
      var more = total > rows.length ? (total - rows.length) + " more not listed" : "";
      wrap.appendChild(el("p", "muted", [note, more].filter(Boolean).join("; ")));
    }
    return wrap;
  }
  function fill(details) {
    if (details.dataset.filled) return;
    details.dataset.filled = "1";
    var index = details.dataset.test;
    var body = details.querySelector(".body");
    var test = data.tests[index];
    var attempts = data.failures[index] || [];
    if (test[6]) body.appendChild(el("p", "muted", "it ran because: " + test[6]));
    attempts.forEach(function (attempt, i) {
      var box = el("div", "attempt");
      var title = "attempt " + (i + 1) + (attempt.origin ? " on " + attempt.origin : "") +
        ", worker " + attempt.worker + ": " + attempt.status + " in " + secs(attempt.duration);
      box.appendChild(el("h3", "", title));
      if (attempt.message) box.appendChild(el("p", "", attempt.message));
      if (attempt.output === undefined) {
        box.appendChild(el("p", "muted", attempt.status === "passed" || attempt.status === "skipped"
          ? "passed: nothing kept" : "no output, server log or DATA_DIR listing was kept for this attempt"));
      } else {
        var cut = attempt.truncated || [];
        section(box, "output" + (cut.indexOf("output") >= 0 ? " (the end)" : ""),
          el("pre", "output", attempt.output || "(no output)"));
        section(box, "server log while it ran" + (cut.indexOf("server_log") >= 0 ? " (the end)" : ""),
          el("pre", "server-log", attempt.server_log || "(the server printed nothing)"));
        section(box, "DATA_DIR after it", listing(attempt.data_dir, attempt.data_dir_total, attempt.data_dir_note));
      }
      body.appendChild(box);
    });
  }
  function reveal(index) {
    var details = document.querySelector('details.failure[data-test="' + Number(index) + '"]');
    if (details) {
      details.open = true;
      fill(details);
      details.scrollIntoView({block: "start"});
    }
  }
  Array.prototype.forEach.call(document.querySelectorAll("details.failure"), function (details) {
    details.addEventListener("toggle", function () { if (details.open) fill(details); });
    if (details.open) fill(details);
  });

  // --- every test: a table built when opened, filtered -------------------------------------
  var all = document.getElementById("all-tests");
  var ROWS = 500;
  function drawTable() {
    var query = document.getElementById("filter").value.toLowerCase();
    var status = document.getElementById("status").value;
    var body = document.getElementById("rows");
    body.textContent = "";
    var shown = 0, matched = 0;
    data.tests.forEach(function (test) {
      if (status && test[1] !== status) return;
      if (query && test[0].toLowerCase().indexOf(query) < 0) return;
      matched++;
      if (shown >= ROWS) return;
      shown++;
      var tr = el("tr");
      var cell = el("td"); cell.appendChild(badge(test[1])); tr.appendChild(cell);
      tr.appendChild(el("td", "id", test[0]));
      tr.appendChild(el("td", "num", secs(test[2])));
      tr.appendChild(el("td", "num", test[3] === null ? "" : String(test[3])));
      tr.appendChild(el("td", "", test[4]));
      tr.appendChild(el("td", "", test[5]));
      tr.appendChild(el("td", "muted", test[7] || test[6]));
      body.appendChild(tr);
    });
    document.getElementById("shown").textContent = matched > shown
      ? shown + " of " + matched + " shown: narrow the filter to see the rest"
      : matched + " test(s)";
  }
  if (all) {
    all.addEventListener("toggle", function () { if (all.open) drawTable(); });
    document.getElementById("filter").addEventListener("input", drawTable);
    document.getElementById("status").addEventListener("change", drawTable);
  }
  drawTimeline();
  document.documentElement.setAttribute("data-ready", "1");
})();
"""


def page_style() -> str:
    """The page's CSS: :data:`STYLE`, the status colours and the widths of the status bar's
    segments as classes (the CSP allows no style attribute in the markup)."""
    colors = "".join(f".{_dot(s)}{{background:{c}}}" for s, c in COLORS.items())
    widths = "".join(f".seg-{n}{{width:{n}%}}" for n in range(101))
    return STYLE + colors + widths + "\n"


def render_html(summary: RunSummary) -> str:
    """The whole page, as text."""
    script, style = SCRIPT, page_style()
    csp = (
        f"default-src 'none'; script-src {_csp_hash(script)}; style-src {_csp_hash(style)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    title = f"testpool report {summary.run_id}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{text(title)}</title>",
        '<link rel="icon" href="data:,">',
        f"<style>{style}</style>",
        "</head>",
        "<body>",
        _header(summary),
        "<main>",
        _error(summary),
        _counts(summary),
        _phases(summary),
        _timeline(summary),
        _failures(summary),
        _services(summary),
        _events(summary),
        _all_tests(summary),
        f"<footer>testpool {text(__version__)} · run {text(summary.run_id)}</footer>",
        "</main>",
        f'<script type="application/json" id="testpool-data">{embed_json(page_data(summary))}</script>',
        f'<script type="application/json" id="testpool-colors">{embed_json({s.value: c for s, c in COLORS.items()})}</script>',
        f"<script>{script}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _verdict(summary: RunSummary) -> tuple[str, str]:
    if summary.interrupted:
        return "stopped", "interrupted"
    code = summary.exit_code()
    return ("ok", "passed") if code == 0 else ("bad", f"failed (exit {code})")


def _header(summary: RunSummary) -> str:
    kind, verdict = _verdict(summary)
    what = "merged report" if summary.parts else "run"
    meta = [
        f"{what} {summary.run_id}",
        f"started {summary.started_at}" if summary.started_at else "",
        f"{summary.wall_time:.1f}s",
        f"{len(summary.results)} tests",
        f"{summary.workers} worker(s)" if summary.workers else "no worker started",
    ]
    return (
        "<header><h1>testpool</h1>"
        f'<span class="verdict {kind}">{text(verdict)}</span>'
        f'<span class="meta">{" · ".join(text(m) for m in meta if m)}</span></header>'
    )


def _error(summary: RunSummary) -> str:
    if not summary.error:
        return ""
    detail = (
        f"<pre>{html.escape(_block(summary.error_detail))}</pre>" if summary.error_detail else ""
    )
    return f'<section class="error"><h2>{text(summary.error)}</h2>{detail}</section>'


def _chip(status: Status, count: int) -> str:
    return (
        f'<span class="chip status-{status.value.replace(" ", "-")}">'
        f'<span class="dot {_dot(status)}"></span>'
        f"<b>{count}</b> {text(status.value)}</span>"
    )


def _dot(status: Status) -> str:
    return "s-" + status.value.replace(" ", "-")


def _counts(summary: RunSummary) -> str:
    counts = summary.counts()
    chips = "".join(_chip(s, counts[s]) for s in STATUS_ORDER if counts[s])
    if not chips:
        chips = '<span class="muted">no tests</span>'
    segments = "".join(
        f'<span class="{_dot(s)} seg-{_percent_class(counts[s], len(summary.results))}"></span>'
        for s in STATUS_ORDER
        if counts[s]
    )
    return (
        '<section id="summary"><h2>Summary</h2>'
        f'<div class="chips">{chips}</div><div class="stack">{segments}</div></section>'
    )


def _percent_class(count: int, total: int) -> int:
    """The width of a segment of the status bar, in whole percent (a class per width: the
    CSP allows no style attribute)."""
    return max(1, round(100 * count / total)) if total else 0


def _phases(summary: RunSummary) -> str:
    if not summary.phases:
        return ""
    rows = []
    for phase in summary.phases:
        counts = Counter(r.status for r in summary.results if r.phase == phase.name)
        shown = ", ".join(f"{counts[s]} {s.value}" for s in STATUS_ORDER if counts[s])
        rows.append(
            "<tr>"
            f'<td class="id">{text(phase.name)}</td><td>{text(phase.outcome)}</td>'
            f"<td>{text(phase.mode)}{', required' if phase.required else ''}</td>"
            f'<td class="num">{phase.tests}</td><td>{text(shown or "no tests")}</td>'
            f'<td class="num">{phase.wall_time:.2f}s</td></tr>'
        )
    head = (
        '<tr><th>phase</th><th>outcome</th><th>mode</th><th class="num">tests</th>'
        '<th>results</th><th class="num">time</th></tr>'
    )
    return f'<section id="phases"><h2>Phases</h2><table>{head}{"".join(rows)}</table></section>'


def _timeline(summary: RunSummary) -> str:
    legend = "".join(
        f'<span class="chip"><span class="dot {_dot(s)}"></span>{text(s.value)}</span>'
        for s in STATUS_ORDER
        if s not in (Status.CACHED, Status.NOT_RUN)
    )
    merged = (
        " Times are from each part's own start where its start is not known."
        if summary.parts
        else ""
    )
    return (
        '<section><h2>Timeline</h2><p class="muted">Every attempt on every worker, from the '
        "start of the run (the thin grey line: the worker starting); a dark mark is an "
        "infrastructure event (a restart). Point at a bar for the test; click a failure to open "
        f"it.{text(merged)}</p>"
        f'<div class="chips">{legend}</div><div id="timeline"></div></section>'
    )


def _failures(summary: RunSummary) -> str:
    reported = [
        (index, result)
        for index, result in enumerate(summary.results)
        if _is_reported_failure(result)
    ]
    if not reported:
        return '<section id="failures"><h2>Failures</h2><p class="muted">None.</p></section>'
    items = []
    for index, result in reported:
        message = result.message or next(
            (a.message for a in reversed(result.attempts) if a.message), ""
        )
        if len(message) > MESSAGE_LIMIT:
            message = message[:MESSAGE_LIMIT] + "…"
        where = [f"worker {result.worker}" if result.worker is not None else ""]
        where += [result.origin, result.phase or "", f"{len(result.attempts)} attempt(s)"]
        items.append(
            f'<details class="failure" data-test="{index}"><summary>'
            f'<span class="badge {_dot(result.status)}">{text(result.status.value)}</span>'
            f'<span class="id">{text(result.id)}</span>'
            f'<span class="muted">{result.duration:.2f}s · {" · ".join(text(w) for w in where if w)}</span>'
            + (f'<span class="message">{text(message)}</span>' if message else "")
            + '</summary><div class="body"></div></details>'
        )
    flaky = sum(1 for _, r in reported if r.status is Status.FLAKY)
    counted = f"{len(reported) - flaky} failed" + (f", {flaky} flaky" if flaky else "")
    return (
        f'<section id="failures"><h2>Failures ({text(counted)})</h2>'
        "<p class=\"muted\">Open one for each failed attempt's output, its worker's server log "
        "while it ran, and what its DATA_DIR held after it.</p>" + "".join(items) + "</section>"
    )


def _services(summary: RunSummary) -> str:
    if not summary.services:
        return ""
    rows = []
    for service in summary.services:
        cells = [
            str(service.get(key, ""))
            for key in ("name", "origin", "state", "port", "url", "restarts", "log")
        ]
        rows.append("<tr>" + "".join(f"<td>{text(c)}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>" for h in ("service", "origin", "state", "port", "url", "restarts", "log")
    )
    return (
        f'<section id="services"><h2>Services</h2><table><tr>{head}</tr>{"".join(rows)}</table>'
        "</section>"
    )


def _events(summary: RunSummary) -> str:
    if not summary.infra_events:
        return ""
    items = "".join(f"<li>{text(event)}</li>" for event in summary.infra_events)
    return f'<section id="infrastructure"><h2>Infrastructure</h2><ul>{items}</ul></section>'


def _all_tests(summary: RunSummary) -> str:
    options = '<option value="">every status</option>' + "".join(
        f'<option value="{text(s.value)}">{text(s.value)}</option>' for s in STATUS_ORDER
    )
    head = (
        '<tr><th>status</th><th>test</th><th class="num">time</th><th class="num">worker</th>'
        "<th>phase</th><th>origin</th><th>message, or why it ran</th></tr>"
    )
    return (
        f'<section><details id="all-tests"><summary><h2>All {len(summary.results)} tests</h2>'
        '</summary><div class="controls"><input id="filter" placeholder="filter by id" '
        f'aria-label="filter by id"><select id="status" aria-label="status">{options}</select>'
        '</div><p id="shown" class="muted"></p>'
        f'<table><thead>{head}</thead><tbody id="rows"></tbody></table></details></section>'
    )
