package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PostgresUser and PostgresPassword are the superuser of a test server.
// Over TCP it must give the password (scram-sha-256), so tests exercise the
// password path; over the UNIX socket it is trusted.
const (
	PostgresUser     = "tlsedge"
	PostgresPassword = "test-secret-pw"
)

// ErrNoPostgres is returned by StartPostgres when no PostgreSQL server
// binaries are installed.
var ErrNoPostgres = errors.New("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: install the Debian package postgresql")

// PostgresServer is a throwaway PostgreSQL server: its own cluster in a
// temporary directory, listening on 127.0.0.1 on a free port and on a UNIX
// socket in that directory.
type PostgresServer struct {
	Port    int
	Dir     string // the temporary directory: data/ and the socket
	binDir  string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logFile string
}

// postgresBinDir finds the newest /usr/lib/postgresql/N/bin holding initdb
// and postgres.
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) && isExec(filepath.Join(d, "pg_isready")) {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// nobody is the unprivileged user PostgreSQL runs as when the tests run as
// root: the server refuses to start as root.
const nobody = 65534

// StartPostgres creates a cluster with initdb and starts its postgres. As
// root, both run as nobody (uid and gid 65534) over a directory owned by
// nobody. postgres runs as a child of the test process rather than through
// pg_ctl's daemon: it gets SIGQUIT (immediate shutdown) if the test process
// dies, so a crashed or timed-out test leaves no server behind. Stop it with
// Stop.
func StartPostgres(ctx context.Context) (*PostgresServer, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tlsedge-pg-")
	if err != nil {
		return nil, err
	}
	s := &PostgresServer{Dir: dir, binDir: bin, done: make(chan struct{}), logFile: filepath.Join(dir, "postgres.log")}
	fail := func(err error) (*PostgresServer, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	asRoot := os.Geteuid() == 0
	cred := func(c *exec.Cmd) {
		c.SysProcAttr = &syscall.SysProcAttr{}
		if asRoot {
			c.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
		}
	}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(PostgresPassword+"\n"), 0o600); err != nil {
		return fail(err)
	}
	if asRoot {
		for _, p := range []string{dir, pwfile} {
			if err := os.Chown(p, nobody, nobody); err != nil {
				return fail(err)
			}
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", PostgresUser,
		"--pwfile="+pwfile, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	cred(initdb)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %v\n%s", err, out))
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	s.Port = port
	logf, err := os.Create(s.logFile)
	if err != nil {
		return fail(err)
	}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	cred(s.cmd)
	s.cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return fail(fmt.Errorf("postgres: %w", err))
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := exec.CommandContext(ctx, filepath.Join(bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port))
		if ready.Run() == nil {
			return s, nil
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(s.logFile)
			return fail(fmt.Errorf("postgres exited at start-up (%v):\n%s", s.waitErr, log))
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.logFile)
			s.Stop()
			return nil, fmt.Errorf("postgres not ready after 30s:\n%s", log)
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Stop shuts the server down (fast shutdown: sessions are ended) and
// removes its directory.
func (s *PostgresServer) Stop() error {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	return os.RemoveAll(s.Dir)
}

// Log is what the server wrote to its log so far.
func (s *PostgresServer) Log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// URL is a postgres:// URL for database db over TCP as PostgresUser,
// with password (empty: none) in the URL.
func (s *PostgresServer) URL(db, password string) string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	if password != "" {
		u.User = url.UserPassword(PostgresUser, password)
	} else {
		u.User = url.User(PostgresUser)
	}
	return u.String()
}

// CreateDB creates database name (letters, digits and '_') with psql over
// the socket and returns a URL for it with the password.
func (s *PostgresServer) CreateDB(t testing.TB, name string) string {
	t.Helper()
	if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		t.Fatalf("CreateDB: bad name %q", name)
	}
	psql := exec.Command(filepath.Join(s.binDir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
		"-h", s.Dir, "-p", strconv.Itoa(s.Port), "-U", PostgresUser, "-d", "postgres", "-c", "CREATE DATABASE "+name)
	if out, err := psql.CombinedOutput(); err != nil {
		t.Fatalf("CREATE DATABASE %s: %v\n%s", name, err, out)
	}
	return s.URL(name, PostgresPassword)
}

// Postgres starts a PostgreSQL server for t, stopped when t ends. Missing
// binaries skip t, or fail it under TLSEDGE_REQUIRE_TOOLS=1.
func Postgres(t testing.TB) *PostgresServer {
	t.Helper()
	s, err := StartPostgres(context.Background())
	if errors.Is(err, ErrNoPostgres) {
		if os.Getenv("TLSEDGE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%v (make test does)", err)
		}
		t.Skipf("%v, or run make test", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// SharedPostgres is one server for a whole test package: Get starts it at
// the first call, and the package's TestMain calls Stop after m.Run.
type SharedPostgres struct {
	mu  sync.Mutex
	s   *PostgresServer
	err error
	n   int
}

// Get returns the shared server, starting it on first use, with the same
// skip/fail rule as Postgres.
func (sp *SharedPostgres) Get(t testing.TB) *PostgresServer {
	t.Helper()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.s == nil && sp.err == nil {
		sp.s, sp.err = StartPostgres(context.Background())
	}
	if errors.Is(sp.err, ErrNoPostgres) {
		if os.Getenv("TLSEDGE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%v (make test does)", sp.err)
		}
		t.Skipf("%v, or run make test", sp.err)
	}
	if sp.err != nil {
		t.Fatal(sp.err)
	}
	return sp.s
}

// DB creates a fresh database on the shared server and returns its URL.
func (sp *SharedPostgres) DB(t testing.TB) string {
	t.Helper()
	s := sp.Get(t)
	sp.mu.Lock()
	sp.n++
	n := sp.n
	sp.mu.Unlock()
	return s.CreateDB(t, fmt.Sprintf("t%d_%d", os.Getpid(), n))
}

// Stop stops the shared server if it was started.
func (sp *SharedPostgres) Stop() {
	if sp.s != nil {
		sp.s.Stop()
	}
}
