package cli

import (
	"io"
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

// TestIssueExamplePolicy: the policy as the README shows it, written over
// several lines in a config file, loads, validates and judges as documented.
func TestIssueExamplePolicy(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "a.sock")
	path := writeConfig(t, "[global]\n"+
		"server.socket_file = \""+sock+"\"\n"+
		"server.ssl_module = \"none\"\n"+
		"server.peercreds = True\n"+
		"server.policy = [\n"+
		"  \"allow peer.uid:0 path:/admin\",\n"+
		"  \"allow cert.uri:spiffe://prod.example/ns/web/* path:/api method:GET,POST\",\n"+
		"  \"deny path:/admin\",\n"+
		"  \"allow src:10.0.0.0/8 host:*.internal.example\",\n"+
		"  \"allow *\",\n"+
		"]\n")
	o, err := Load([]string{"--config", path}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := o.Main.Rule.Policy.Len(); n != 5 {
		t.Fatalf("%d rules, want 5", n)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--uid", "0", "--path", "/admin/x"}, `allow: rule 1 "allow peer.uid:0 path:/admin"`},
		{[]string{"--uid", "65534", "--path", "//Admin"}, `deny: rule 3 "deny path:/admin"`},
		{[]string{"--uid", "65534", "--path", "/"}, `allow: rule 5 "allow *"`},
	} {
		var out strings.Builder
		if err := run(t.Context(), append([]string{"policy", "explain", "--config", path}, tt.args...), &out, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), tt.want) {
			t.Errorf("%q:\n%s\nwant %s", tt.args, out.String(), tt.want)
		}
	}
}
