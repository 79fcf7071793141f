"""Interrupt testpool at random moments and check that nothing of it is left behind.

    python tests/stress/interrupts.py [--runs 100] [--seed N] [--tool PATH]

(`just stress` runs it.) Each run starts `testpool --workers 4 --full` on a 4-worker suite of
real tests against real dev servers (about 4-5 s), then, at a random moment 0-4 s in, does one
of four things to it, as a terminal, a CI agent or a container would:

- SIGINT to its process group (Ctrl-C in a terminal);
- SIGTERM to testpool;
- SIGKILL to testpool, reaped at once by its parent;
- SIGKILL to testpool, reaped only 5 s later (a parent that reaps late: testpool stays a zombie,
  and everything must be gone while it still is).

A quarter of the runs first delete the cache file, so pytest's collection runs again and the
interrupt can land in the middle of discovery. After each run it polls, with a deadline, for
anything of the run still there: a process started for it (found by its TMPDIR or run id), a
tmux server or socket, a listener on its ports, a temp folder, a run record. It prints one line
per run and a table, and exits 1 if any run left something behind.

With ``--tool PATH`` (e.g. ../shared/tools/leftovers) that tool also runs after every run; it
looks at the whole machine, so use it on a machine where nothing else runs testpool.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/
from portlock import claim

REPO = Path(__file__).resolve().parents[2]
DEVSERVER = REPO / "tests" / "fixtures" / "devserver.py"
KINDS = ("SIGINT", "SIGTERM", "SIGKILL", "SIGKILL, reaped 5 s late")
LATE_REAP = 5.0
CLEAN_DEADLINE = 20.0
WINDOW = 4.0
TESTS = 40
WAIT_MS = 300

CONFTEST = """
import os, httpx, pytest

@pytest.fixture(scope="session")
def http():
    with httpx.Client(base_url=os.environ["TEST_BASE_URL"], trust_env=False) as client:
        yield client
"""

SUITE = """
import subprocess

def test_page_{n}(http):
    assert http.get("/sleep?ms={ms}").status_code == 200

def test_spawns_a_child_{n}(http):
    subprocess.Popen(["sleep", "60"])  # a test that forgets a child process
    assert http.get("/sleep?ms={ms}").status_code == 200
"""


@dataclass
class Outcome:
    kind: str
    at: float
    recollect: bool
    finished_first: bool
    exit_code: int | None
    clean_after: float | None  # seconds from the signal until nothing was left; None: never
    left: list[str]


def free_port_block(size: int = 8) -> int:
    """Ports no other process of ours holds (tests, a benchmark: see tests/portlock.py)."""
    for base in range(23000, 60000, 16):
        if claim(base, size):
            return base
    raise SystemExit("no free port block")


class Stress:
    def __init__(self, base: Path, tool: str | None) -> None:
        self.root = base / "project"
        self.tmp = base / "tmp"
        self.state = base / "state"
        for folder in (self.root, self.tmp, self.state):
            folder.mkdir(parents=True)
        self.port_base = free_port_block()
        self.tool = tool
        (self.root / "tests").mkdir()
        (self.root / "tests" / "conftest.py").write_text(CONFTEST)
        for chunk in range(4):
            body = "".join(SUITE.format(n=f"{chunk}_{n}", ms=WAIT_MS) for n in range(TESTS // 8))
            (self.root / "tests" / f"test_chunk{chunk}.py").write_text(body)
        (self.root / "testpool.toml").write_text(
            f'server = "{{python}} {DEVSERVER}"\ntests = "tests"\nworkers = 4\n'
            f"port_base = {self.port_base}\nstartup_timeout = 30\n"
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TESTPOOL_", "PYTEST_"))}
        env.update(TMPDIR=str(self.tmp), TESTPOOL_STATE_DIR=str(self.state), NO_COLOR="1")
        return env

    def leftovers(self, run_ids: set[str]) -> list[str]:
        found: list[str] = []
        ids = run_ids | {p.stem for p in (self.state / "runs").glob("*.json")}
        for proc in psutil.process_iter(["pid"]):
            try:
                env = proc.environ()
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            if env.get("TMPDIR") == str(self.tmp) or env.get("TESTPOOL_RUN_ID") in ids:
                try:
                    found.append(f"process {proc.pid}: {' '.join(proc.cmdline())[:90]}")
                except psutil.Error:
                    continue
        tmux_dir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        found += [f"tmux socket {p.name}" for p in tmux_dir.glob("testpool-*") if p.name[9:] in ids]
        for conn in psutil.net_connections(kind="inet"):
            port = conn.laddr.port if conn.laddr else 0
            if conn.status == psutil.CONN_LISTEN and self.port_base <= port < self.port_base + 8:
                found.append(f"listener on port {port}")
        found += [f"temp {p}" for p in self.tmp.iterdir()]
        found += [f"run record {p.name}" for p in (self.state / "runs").glob("*.json")]
        if self.tool and not found:
            done = subprocess.run(
                [self.tool, "--tmp", str(self.tmp)], capture_output=True, text=True
            )
            if done.returncode != 0:
                found += [f"leftovers tool: {line}" for line in done.stdout.splitlines()]
        return found

    def run_ids(self) -> set[str]:
        ids = {p.stem for p in (self.state / "runs").glob("*.json")}
        report = self.root / "test-results" / "report.json"
        try:
            ids.add(json.loads(report.read_text())["run_id"])
        except (OSError, ValueError, KeyError):
            pass
        return ids

    def once(self, kind: str, at: float, recollect: bool) -> Outcome:
        if recollect:
            (self.root / ".test-cache.json").unlink(missing_ok=True)
        log = open(self.tmp.parent / "testpool.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "testpool", "--full"],
            cwd=self.root, env=self.env(), stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()
        started = time.monotonic()
        seen: set[str] = set()
        while time.monotonic() - started < at and process.poll() is None:
            seen |= self.run_ids()  # a killed run's id must be known to look for its leftovers
            time.sleep(0.01)
        finished_first = process.poll() is not None
        signalled = time.monotonic()
        if not finished_first:
            seen |= self.run_ids()
            if kind == "SIGINT":
                os.killpg(process.pid, signal.SIGINT)
            elif kind == "SIGTERM":
                os.kill(process.pid, signal.SIGTERM)
            else:
                os.kill(process.pid, signal.SIGKILL)
        late = kind.startswith("SIGKILL,") and not finished_first
        if not late:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        clean_after: float | None = None
        left: list[str] = []
        deadline = signalled + (LATE_REAP if late else CLEAN_DEADLINE)
        while True:
            left = self.leftovers(seen | self.run_ids())
            if not left:
                clean_after = time.monotonic() - signalled
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if late:
            process.wait(timeout=60)  # the parent reaps, at last
        if clean_after is None:
            self.sweep(seen)
        return Outcome(kind, at, recollect, finished_first, process.returncode, clean_after, left)

    def sweep(self, run_ids: set[str]) -> None:
        """After a failure: clean up so the next run starts from nothing."""
        subprocess.run(
            [sys.executable, "-m", "testpool", "clean"], cwd=self.root, env=self.env(),
            capture_output=True, timeout=120,
        )  # fmt: skip
        for proc in psutil.process_iter(["pid"]):
            try:
                env = proc.environ()
                if env.get("TMPDIR") == str(self.tmp) or env.get("TESTPOOL_RUN_ID") in run_ids:
                    proc.kill()
            except psutil.Error:
                continue
        for entry in self.tmp.iterdir():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--tool", help="also run this leftovers tool after every run")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="stress-"))
    stress = Stress(base, args.tool)
    print(f"interrupt stress: {args.runs} runs, seed {seed}, project {stress.root}", flush=True)
    # Warm-up: a first run fills the cache (collection, durations) like a developer's machine.
    subprocess.run(
        [sys.executable, "-m", "testpool"], cwd=stress.root, env=stress.env(),
        capture_output=True, timeout=300,
    )  # fmt: skip
    outcomes: list[Outcome] = []
    for number in range(1, args.runs + 1):
        kind = KINDS[(number - 1) % len(KINDS)] if args.runs <= len(KINDS) else rng.choice(KINDS)
        outcome = stress.once(kind, rng.uniform(0.0, WINDOW), rng.random() < 0.25)
        outcomes.append(outcome)
        state = (
            "finished before the signal" if outcome.finished_first else f"exit {outcome.exit_code}"
        )
        verdict = (
            f"clean after {outcome.clean_after:.2f} s"
            if outcome.clean_after is not None
            else "LEFT: " + "; ".join(outcome.left[:5])
        )
        print(
            f"{number:4d} {outcome.kind:26} at {outcome.at:4.2f} s"
            f"{' (recollect)' if outcome.recollect else '':12} {state:28} {verdict}",
            flush=True,
        )
    report(outcomes)
    shutil.rmtree(base, ignore_errors=True)
    return 0 if all(o.clean_after is not None for o in outcomes) else 1


def report(outcomes: list[Outcome]) -> None:
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_kind[outcome.kind].append(outcome)
    print("\n| interrupt | runs | hit a live run | left nothing | slowest clean-up (s) |")
    print("|---|---:|---:|---:|---:|")
    for kind in KINDS:
        group = by_kind.get(kind, [])
        if not group:
            continue
        clean = [o for o in group if o.clean_after is not None]
        slowest = max((o.clean_after or 0.0 for o in clean), default=0.0)
        live = sum(not o.finished_first for o in group)
        print(f"| {kind} | {len(group)} | {live} | {len(clean)} | {slowest:.2f} |")
    total_clean = sum(o.clean_after is not None for o in outcomes)
    codes = Counter(o.exit_code for o in outcomes if not o.finished_first)
    print(f"\n{total_clean}/{len(outcomes)} runs left nothing behind; exit codes: {dict(codes)}")


if __name__ == "__main__":
    raise SystemExit(main())
