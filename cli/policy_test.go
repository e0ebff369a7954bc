package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tlsedge.ini")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckWarnsAdminTrap is the README's trap: /admin restricted by peer
// credentials on the UNIX socket and served to anyone by the TCP server of
// the same process. check warns, naming both servers and a fix; once the
// TCP server restricts /admin too, the warning is gone.
func TestCheckWarnsAdminTrap(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	base := "[global]\nserver.mount = [\"/=text:app\"]\n" +
		"server.local.socket_file = \"" + sock + "\"\n" +
		"server.local.peercreds = True\n" +
		"server.local.peercreds_mount_allow = [\"/admin=uid:0\"]\n"
	out, err := runCheck(t, "--config", writeConfig(t, base))
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	want := `warning: server main serves /admin to anyone, while server local restricts it (peercreds_mount_allow /admin); restrict it on main too, e.g. server.policy = ["deny path:/admin", "allow *"]`
	if !strings.Contains(out, want) {
		t.Fatalf("check output lacks the warning:\n%s", out)
	}
	// The same trap through server.policy.
	viaPolicy := "[global]\nserver.mount = [\"/=text:app\"]\n" +
		"server.local.socket_file = \"" + sock + "\"\n" +
		"server.local.peercreds = True\n" +
		"server.local.policy = [\n  \"allow peer.uid:0 path:/admin\",\n  \"deny path:/admin\",\n  \"allow *\",\n]\n"
	out, err = runCheck(t, "--config", writeConfig(t, viaPolicy))
	if err != nil || !strings.Contains(out, `server local restricts it (server.policy rule 2 "deny path:/admin")`) {
		t.Fatalf("check: %v\n%s", err, out)
	}
	fixed := viaPolicy + "server.policy = [\"deny path:/admin\", \"allow *\"]\nserver.local.policy = [\"allow peer.uid:0 path:/admin\", \"deny path:/admin\", \"allow *\"]\n"
	out, err = runCheck(t, "--config", writeConfig(t, fixed))
	if err != nil || strings.Contains(out, "warning:") {
		t.Fatalf("check after the fix: %v\n%s", err, out)
	}
}

// TestPolicyErrorsHaveFileLineColumn: a bad rule in a list written over
// several lines is reported at its file, line and column.
func TestPolicyErrorsHaveFileLineColumn(t *testing.T) {
	path := writeConfig(t, "[global]\nserver.policy = [\n  \"allow peer.uid:0 path:/admin\",\n  \"deny  pth:/admin\",\n  \"allow *\",\n]\n")
	_, err := runCheck(t, "--config", path)
	want := path + ":4:10: server.policy: rule 2, column 7: unknown condition \"pth\""
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %s", err, want)
	}
}
