//go:build unix

package peercredtest

import (
	"os/exec"
	"syscall"
	"testing"
)

// Command returns a command that runs name with args as uid and gid, with no
// supplementary groups.
func Command(t testing.TB, uid, gid uint32, name string, args ...string) *exec.Cmd {
	t.Helper()
	RequireRoot(t)
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// An empty Groups list with NoSetGroups unset clears supplementary groups.
		Credential: &syscall.Credential{Uid: uid, Gid: gid},
	}
	return cmd
}
