package tlsadapter

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckACMEReportsProblems(t *testing.T) {
	// A CA nobody listens on, and storage others can read.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := filepath.Join(t.TempDir(), "acme")
	if err := os.MkdirAll(filepath.Join(dir, "certificates"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "certificates", "x.key"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := ACMEOptions{Domains: []string{"Check.example.com"}, CA: "https://" + addr + "/dir", Storage: dir}
	checks, err := CheckACME(context.Background(), Params{Options: Options{ACME: o}})
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 3 {
		t.Fatalf("%d checks: %v", len(checks), checks)
	}
	st, ca, name := checks[0], checks[1], checks[2]
	if st.OK || !strings.Contains(st.Detail, "want 0700") || !strings.Contains(st.Detail, "x.key") {
		t.Errorf("storage: %s", st)
	}
	if ca.OK || !strings.Contains(ca.Detail, "unreachable") {
		t.Errorf("ca: %s", ca)
	}
	if !name.OK || name.What != "name check.example.com" || name.Name.State != "pending" {
		t.Errorf("name: %s %+v", name, name.Name)
	}
	if s := ca.String(); !strings.HasPrefix(s, "FAIL acme ca: ") {
		t.Errorf("String = %q", s)
	}

	// Options that cannot work are an error, not a result.
	if _, err := CheckACME(context.Background(), Params{Options: Options{ACME: ACMEOptions{Storage: dir}}}); err == nil {
		t.Error("no names and no on-demand: no error")
	}
}
