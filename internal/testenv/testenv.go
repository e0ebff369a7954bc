// Package testenv holds what tests across tlsedge share: finding the external
// tools a test drives (curl, openssl, wrk...), the switch for long tests, and
// certificates minted per test with a fixed validity window.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool returns the path of the executable name, which the Debian package
// pkg provides. When it is missing the test is skipped with a message naming the
// package, or fails when TLSEDGE_REQUIRE_TOOLS=1 (set by `make test`, which
// installs every such package first).
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("TLSEDGE_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s not found: install the Debian package %s (make test does)", name, pkg)
	}
	t.Skipf("%s not found: install the Debian package %s, or run make test", name, pkg)
	return ""
}

// Long skips t unless TLSEDGE_LONG=1 (set by `make test`): soak, flood and
// slow-client tests run in CI but stay out of a quick local loop.
func Long(t testing.TB) {
	t.Helper()
	if os.Getenv("TLSEDGE_LONG") != "1" {
		t.Skip("long test: set TLSEDGE_LONG=1 (make test does)")
	}
}
