package peercred_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestCrossCompile builds this package and its users in tlsedge (policy,
// control; not their tests) for every OS peercred has, or deliberately lacks,
// an implementation for, so a change that only compiles on Linux is
// caught on a Linux CI machine. Builds are cached, so reruns are fast.
func TestCrossCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling is skipped in -short mode")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		var lerr error
		if goTool, lerr = exec.LookPath("go"); lerr != nil {
			t.Skip("go tool not found")
		}
	}
	targets := []struct{ goos, goarch string }{
		{"linux", "arm64"},
		{"darwin", "arm64"},
		{"freebsd", "amd64"},
		{"openbsd", "amd64"},
		{"netbsd", "amd64"},
		{"windows", "amd64"},
	}
	for _, tt := range targets {
		t.Run(tt.goos+"/"+tt.goarch, func(t *testing.T) {
			cmd := exec.Command(goTool, "build", "tlsedge/peercred", "tlsedge/policy", "tlsedge/control")
			cmd.Env = append(os.Environ(), "GOOS="+tt.goos, "GOARCH="+tt.goarch, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("go build for %s/%s: %v\n%s", tt.goos, tt.goarch, err, out)
			}
		})
	}
}
