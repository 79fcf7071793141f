"""Which services each test needs, which start, the cache key, and how phases split a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testpool.cache import CacheEntry, decide
from testpool.config import Config, parse_config
from testpool.errors import ConfigError
from testpool.phases import Phase, failed, split
from testpool.requirements import cache_component, closure, needed, resolve, service_digests
from testpool.results import Status
from testpool.runners.base import TestCase
from testpool.runners.go_runner import declared_requirements


def make(tmp_path: Path, **table: Any) -> Config:
    (tmp_path / "e2e").mkdir(exist_ok=True)
    return parse_config(
        {"server": "run-me", **table}, root=tmp_path, source=tmp_path / "testpool.toml"
    )


def service(**keys: Any) -> dict[str, Any]:
    return {"command": "serve", "port": "auto", **keys}


SERVICES = {
    "db": service(),
    "cache": service(depends_on=["db"]),
    "mail": service(),
    "api": service(command="api --cache {services.cache.url}"),
}


def test_requirements_are_declared_plus_the_table(tmp_path: Path) -> None:
    config = make(
        tmp_path,
        services=SERVICES,
        requires={"e2e/test_db*.py::*": ["db"], "*::test_mail*": ["mail", "db"]},
    )
    cases = resolve(
        [
            TestCase("e2e/test_db_read.py::test_read", "e2e/test_db_read.py", requires=("cache",)),
            TestCase("e2e/test_x.py::test_mail_sent", "e2e/test_x.py"),
            TestCase("e2e/test_x.py::test_plain", "e2e/test_x.py"),
        ],
        config,
    )
    assert [case.requires for case in cases] == [("cache", "db"), ("mail", "db"), ()]


def test_an_unknown_requirement_names_the_test_and_the_known_services(tmp_path: Path) -> None:
    config = make(tmp_path, services=SERVICES)
    with pytest.raises(ConfigError) as caught:
        resolve([TestCase("e2e/t.py::test_a", "e2e/t.py", requires=("postgres",))], config)
    assert caught.value.message == (
        "test e2e/t.py::test_a requires unknown service 'postgres' "
        "(known services: api, cache, db, mail)"
    )
    assert caught.value.exit_code == 2


def test_closure_puts_dependencies_first(tmp_path: Path) -> None:
    config = make(tmp_path, services=SERVICES)
    assert closure(["api"], config.services) == ["db", "cache", "api"]
    assert closure(["mail", "cache"], config.services) == ["db", "cache", "mail"]


def test_only_what_the_tests_to_run_need_starts(tmp_path: Path) -> None:
    config = make(tmp_path, services=SERVICES)
    needs_cache = TestCase("a", "", requires=("cache",))
    assert needed([needs_cache, TestCase("b", "")], config) == ["db", "cache"]
    assert needed([TestCase("b", "")], config) == []
    assert needed([], config) == []


def test_the_servers_services_start_for_any_test_but_not_for_none(tmp_path: Path) -> None:
    config = make(tmp_path, services=SERVICES, server="app {services.api.port}")
    assert needed([TestCase("b", "")], config) == ["db", "cache", "api"]
    assert needed([], config) == []


def test_cache_key_changes_with_the_requirements_and_the_services_used(tmp_path: Path) -> None:
    config = make(tmp_path, services=SERVICES)
    digests = service_digests(config)
    plain = TestCase("t", "")
    assert cache_component(plain, (), digests) is None  # no services: no component at all
    uses_cache = cache_component(TestCase("t", "", requires=("cache",)), (), digests)
    uses_db = cache_component(TestCase("t", "", requires=("db",)), (), digests)
    assert uses_cache and uses_db and uses_cache != uses_db
    # A change to a dependency of the service changes the key; a change to another does not.
    changed_db = make(tmp_path, services={**SERVICES, "db": service(command="serve --v2")})
    changed_mail = make(tmp_path, services={**SERVICES, "mail": service(command="other")})
    again = TestCase("t", "", requires=("cache",))
    assert cache_component(again, (), service_digests(changed_db)) != uses_cache
    assert cache_component(again, (), service_digests(changed_mail)) == uses_cache


def test_a_test_whose_requirement_changed_reruns(tmp_path: Path) -> None:
    config = make(tmp_path, services=SERVICES)
    digests = service_digests(config)
    base = {"test": "t", "helpers": "h", "inputs": "i", "seed": "s", "config": "c", "secrets": "n"}
    entry = CacheEntry(Status.PASSED, 1.0, "2026-01-01", base)
    assert decide(entry, base, full=False) == (False, "unchanged")
    now_needs_db = {
        **base,
        "services": str(cache_component(TestCase("t", "", requires=("db",)), (), digests)),
    }
    assert decide(entry, now_needs_db, full=False) == (True, "services changed")
    entry_with_db = CacheEntry(Status.PASSED, 1.0, "2026-01-01", now_needs_db)
    assert decide(entry_with_db, base, full=False) == (True, "services changed")


def test_go_comment_directly_above_the_test() -> None:
    source = (
        "package e2e\n\n// TestA reads.\n// testpool:requires db, cache\n//testpool:requires mail\n"
    )
    assert declared_requirements(source) == ("db", "cache", "mail")
    assert declared_requirements("// testpool:requires db\n\n") == ()  # a blank line between
    assert declared_requirements("// testpool:requires db\nvar x = 1\n") == ()
    assert declared_requirements("// testpool:requiresdb\n") == ()


def case(test_id: str, *markers: str) -> TestCase:
    return TestCase(test_id, test_id.split("::")[0], markers=markers)


def test_phases_in_order_first_match_wins_rest_last(tmp_path: Path) -> None:
    config = make(
        tmp_path,
        phases=[
            {"name": "smoke", "select": ["e2e/smoke/*"], "mode": "sequential", "required": True},
            {"name": "slow", "marker": "slow", "select": ["e2e/smoke/test_b.py::*"]},
            {"name": "empty", "select": ["nothing*"]},
        ],
    )
    cases = [
        case("e2e/test_x.py::test_1"),
        case("e2e/smoke/test_b.py::test_2", "slow"),
        case("e2e/test_y.py::test_3", "slow", "parametrize"),
        case("e2e/smoke/test_a.py::test_4"),
    ]
    assert split(cases, config) == [
        Phase(
            "smoke",
            ("e2e/smoke/test_b.py::test_2", "e2e/smoke/test_a.py::test_4"),
            "sequential",
            True,
        ),
        Phase("slow", ("e2e/test_y.py::test_3",)),
        Phase("other", ("e2e/test_x.py::test_1",)),
    ]


def test_without_phases_there_is_one(tmp_path: Path) -> None:
    config = make(tmp_path)
    assert split([case("a"), case("b")], config) == [Phase("other", ("a", "b"))]


def test_a_phase_failed_by_the_exit_code_rules() -> None:
    phase = Phase("smoke", ("a", "b", "c", "d"))
    statuses = {"a": Status.PASSED, "b": Status.FLAKY, "c": Status.SKIPPED}
    assert failed(phase, statuses) == []
    assert failed(phase, statuses, fail_on_flaky=True) == ["b"]
    assert failed(phase, {**statuses, "d": Status.ERROR}) == ["d"]
    assert failed(phase, {"a": Status.TIMEOUT}) == ["a"]


def test_go_discovery_reads_the_comments(tmp_path: Path) -> None:
    from testpool.runners.go_runner import GoRunner
    from testpool.state import RunScope

    (tmp_path / "e2e").mkdir()
    (tmp_path / "e2e" / "db_test.go").write_text(
        'package e2e\n\nimport "testing"\n\n'
        "// TestRead reads what TestWrite wrote.\n"
        "// testpool:requires db\n"
        "func TestRead(t *testing.T) {}\n\n"
        "// testpool:requires cache\n\n"
        "func TestPlain(t *testing.T) {}\n"
    )
    config = make(tmp_path, runner="go", services=SERVICES)
    cases = GoRunner(config).discover(RunScope(tmp_path))
    assert [(case.id, case.requires) for case in cases] == [
        ("e2e/db_test.go::TestRead", ("db",)),
        ("e2e/db_test.go::TestPlain", ()),
    ]
