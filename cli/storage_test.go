package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"tlsedge/config"
	"tlsedge/control"
	"tlsedge/internal/testenv"
	"tlsedge/storage"
)

// runCheck runs `tlsedge check` with a throwaway data directory and the
// plain module (nothing else to check) plus args.
func runCheck(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	args = append([]string{"check", "--data-dir", t.TempDir(), "--ssl-module", "none", "--socket-port", "0"}, args...)
	err := run(ctx, args, &out, &out)
	return out.String(), err
}

func withoutPassword(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(u.User.Username())
	return u.String()
}

// TestCheckStorage: `tlsedge check` connects to engine.storage's database,
// reads the schema version and takes and releases a lock, and says what to
// do when it cannot, naming the storage option; the password never shows.
func TestCheckStorage(t *testing.T) {
	pgs := testenv.Postgres(t)
	dsn := pgs.CreateDB(t, "checked")
	plain := withoutPassword(t, dsn)

	t.Run("fresh database, password from PGPASSWORD", func(t *testing.T) {
		t.Setenv("PGPASSWORD", testenv.PostgresPassword)
		out, err := runCheck(t, "--storage", plain)
		t.Log(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"ok   storage connect", "ok   storage schema: version 0; tlsedge migrates it to", "ok   storage lock: taken and released"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		// The dry run changed nothing.
		p, err := storage.ConnectPostgres(context.Background(), plain, storage.PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if v, err := p.CurrentVersion(context.Background()); v != 0 || err != nil {
			t.Errorf("check left schema version %d (%v); want none", v, err)
		}
	})

	t.Run("migrated database, password in a PGPASSFILE", func(t *testing.T) {
		p, err := storage.OpenPostgres(context.Background(), dsn, storage.PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
		u, _ := url.Parse(dsn)
		pass := t.TempDir() + "/pgpass"
		line := u.Hostname() + ":" + u.Port() + ":checked:" + testenv.PostgresUser + ":" + testenv.PostgresPassword + "\n"
		if err := writeFile0600(pass, line); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PGPASSFILE", pass)
		out, err := runCheck(t, "--storage", plain)
		t.Log(out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "ok   storage schema: version "+strconv.Itoa(storage.SchemaVersion)+", current") ||
			!strings.Contains(out, "ok   storage lock: taken and released") {
			t.Errorf("unexpected output")
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		u, _ := url.Parse(dsn)
		u.User = url.UserPassword(testenv.PostgresUser, "wrong-pw-xyzzy")
		out, err := runCheck(t, "--storage", u.String())
		t.Log(out, err)
		if err == nil {
			t.Fatal("check passed with a wrong password")
		}
		if !errors.Is(err, config.ErrBadValue) || !strings.HasPrefix(err.Error(), "--storage: ") && !strings.Contains(err.Error(), "storage") {
			t.Errorf("error does not name the storage option: %v", err)
		}
		if !strings.Contains(out, "FAIL storage connect") || !strings.Contains(out, "password is wrong or missing") || !strings.Contains(out, "PGPASSFILE") {
			t.Errorf("output does not say what to do")
		}
		if strings.Contains(out+err.Error(), "wrong-pw-xyzzy") {
			t.Errorf("the password shows in check's output")
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		out, err := runCheck(t, "--storage", "postgres://tlsedge:pw-xyzzy@127.0.0.1:"+strconv.Itoa(port)+"/x?sslmode=disable&connect_timeout=5")
		t.Log(out, err)
		if err == nil || !strings.Contains(err.Error(), "storage") {
			t.Fatalf("check error %v; want one naming storage", err)
		}
		if !strings.Contains(out, "FAIL storage connect") || !strings.Contains(out, "unreachable") {
			t.Errorf("output does not say the server is unreachable")
		}
		if strings.Contains(out+err.Error(), "pw-xyzzy") {
			t.Errorf("the password shows in check's output")
		}
	})
}

// TestStorageOptionParsed: a bad storage value is an error at load naming
// the option; ctl config shows a URL with its password masked.
func TestStorageOptionParsed(t *testing.T) {
	for _, bad := range []string{"ftp://host/x", "postgres://host:notaport/db"} {
		if _, err := Load([]string{"--storage", bad}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "storage") {
			t.Errorf("--storage %s: %v; want an error naming storage", bad, err)
		}
	}
	o, err := Load([]string{"--storage", "postgres://edge:s3cr3t-pw@db.example:5432/tlsedge"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	red, err := control.Redact(effectiveConfig(o))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(red)
	if strings.Contains(string(b), "s3cr3t-pw") || !strings.Contains(string(b), `"storage":"postgres://edge:REDACTED@db.example:5432/tlsedge"`) {
		t.Errorf("ctl config: %s", b)
	}
	if got := o.Process.Storage.String(); got != "postgres://edge:REDACTED@db.example:5432/tlsedge" {
		t.Errorf("Storage.String() = %q", got)
	}
	o, err = Load([]string{"--storage", "relative/dir"}, &bytes.Buffer{})
	if err != nil || !strings.HasPrefix(o.Process.Storage.Dir(), "/") {
		t.Errorf("directory storage: %q, %v; want an absolute path", o.Process.Storage.Dir(), err)
	}
}

func writeFile0600(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// TestStorageKeyFileRequired: a postgres:// storage with session tickets on
// needs storage_key_file, at start-up and in check, before any connection;
// a file others may read, or one too short, is refused naming the option.
func TestStorageKeyFileRequired(t *testing.T) {
	dsn := "postgres://edge@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	dir := t.TempDir()
	loose, short := dir+"/loose", dir+"/short"
	os.WriteFile(loose, []byte(strings.Repeat("ab", 32)), 0o644)
	os.Chmod(loose, 0o644)
	os.WriteFile(short, []byte("abcd"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"serve without", []string{"--storage", dsn}, "storage_key_file: is needed with a postgres:// storage"},
		{"check without", []string{"check", "--storage", dsn}, "storage_key_file: is needed with a postgres:// storage"},
		{"serve, group-readable", []string{"--storage", dsn, "--storage-key-file", loose}, "chmod 600"},
		{"check, short", []string{"check", "--storage", dsn, "--storage-key-file", short}, "needs at least 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, append(tc.args, "--data-dir", t.TempDir(), "--socket-port", "0"), &out, &out)
			if err == nil || !strings.Contains(err.Error(), "storage_key_file") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v; want an error naming storage_key_file saying %q\n%s", err, tc.want, out.String())
			}
		})
	}
	// Tickets off: no file needed (check then fails only on the database).
	var out bytes.Buffer
	err := run(context.Background(), []string{"check", "--storage", dsn, "--ssl-session-tickets=false", "--data-dir", t.TempDir(), "--socket-port", "0"}, &out, &out)
	if err == nil || strings.Contains(err.Error(), "storage_key_file") {
		t.Fatalf("tickets off: %v; want only the database's failure", err)
	}
}
