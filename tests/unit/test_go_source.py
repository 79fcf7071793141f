"""Splitting a Go test file into its tests' own bodies and the code the package shares."""

from __future__ import annotations

from testpool.runners.go_source import go_test_names, mentions, shared_text

FILE = """package e2e

import "testing"

// TestMain is shared: it takes *testing.M.
func TestMain(m *testing.M) { m.Run() }

func TestOne(t *testing.T) {
	s := "a } brace in a string"
	r := '}'
	raw := `and } one
in a raw string`
	/* a } comment */
	// another }
	if len(s) > 0 { _ = r; _ = raw }
}

func helper() int { return 1 }

func TestTwo(t *testing.T) {
	if helper() != 1 { t.Fatal("no") }
}
"""


def test_test_names() -> None:
    assert go_test_names(FILE) == ["TestOne", "TestTwo"]


def test_bodies_are_removed_and_everything_else_kept() -> None:
    shared = shared_text(FILE, mentions(FILE))
    assert "func TestOne(t *testing.T) {}" in shared
    assert "func TestTwo(t *testing.T) {}" in shared
    assert "func helper() int { return 1 }" in shared
    assert "func TestMain(m *testing.M) { m.Run() }" in shared
    assert "brace in a string" not in shared and "helper() != 1" not in shared


def test_editing_a_body_leaves_the_shared_text_alone_and_a_helper_does_not() -> None:
    before = shared_text(FILE, mentions(FILE))
    edited = FILE.replace('t.Fatal("no")', 't.Fatalf("no: %d", 2)')
    assert shared_text(edited, mentions(edited)) == before
    helper = FILE.replace("return 1", "return 2")
    assert shared_text(helper, mentions(helper)) != before
    renamed = FILE.replace("TestTwo", "TestThree")
    assert shared_text(renamed, mentions(renamed)) != before


def test_a_test_named_elsewhere_in_the_package_keeps_its_body() -> None:
    package = FILE + "\nfunc TestThree(t *testing.T) { TestTwo(t) }\n"
    shared = shared_text(FILE, mentions(package))
    assert "helper() != 1" in shared  # TestThree calls TestTwo: its body is shared
    assert "brace in a string" not in shared


def test_unbalanced_braces_keep_the_whole_file() -> None:
    broken = FILE.replace("func helper() int { return 1 }", "")[:-3]
    assert shared_text(broken, mentions(broken)) == broken
