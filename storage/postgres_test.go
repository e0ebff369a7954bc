package storage

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

var pg testenv.SharedPostgres

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// open opens a migrated storage on a fresh database.
func open(t *testing.T, dsn string, o PostgresOptions) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := OpenPostgres(ctx, dsn, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestPostgresKV runs the Storage contract the way certmagic's FileStorage
// behaves: stored values load back, missing keys are fs.ErrNotExist for
// Load, List and Stat, Delete removes a key or a whole directory and is
// quiet about missing keys, List is one level or recursive with full keys,
// and directories are implicit.
func TestPostgresKV(t *testing.T) {
	ctx := context.Background()
	s := open(t, pg.DB(t), PostgresOptions{})

	files := map[string]string{
		"certificates/ca/example.com/example.com.crt": "crt",
		"certificates/ca/example.com/example.com.key": "key",
		"certificates/ca/other.org/other.org.crt":     "crt2",
		"acme/ca/users/me/me.json":                    "user",
		"top":                                         "",
		"certificatesX/not-below-certificates":        "x",
	}
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range files {
		got, err := s.Load(ctx, k)
		if err != nil || string(got) != v {
			t.Errorf("Load(%q) = %q, %v; want %q", k, got, err, v)
		}
	}
	// Overwrite.
	if err := s.Store(ctx, "top", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Load(ctx, "top"); string(got) != "new" {
		t.Errorf("Load after overwrite = %q", got)
	}
	for _, k := range []string{"missing", "certificates/ca/example.com/none", "certificates"} {
		if _, err := s.Load(ctx, k); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load(%q) err = %v; want fs.ErrNotExist", k, err)
		}
	}

	exists := map[string]bool{
		"certificates": true, "certificates/ca": true, "certificates/ca/example.com/example.com.crt": true,
		"top": true, "certif": false, "certificates/c": false, "missing": false, "certificates/ca/example.com/example.com.crt/x": false,
	}
	for k, want := range exists {
		if got := s.Exists(ctx, k); got != want {
			t.Errorf("Exists(%q) = %v; want %v", k, got, want)
		}
	}

	lists := []struct {
		prefix    string
		recursive bool
		want      []string
	}{
		{"certificates", false, []string{"certificates/ca"}},
		{"certificates/ca", false, []string{"certificates/ca/example.com", "certificates/ca/other.org"}},
		{"certificates/ca/example.com", false, []string{"certificates/ca/example.com/example.com.crt", "certificates/ca/example.com/example.com.key"}},
		{"certificates", true, []string{
			"certificates/ca", "certificates/ca/example.com",
			"certificates/ca/example.com/example.com.crt", "certificates/ca/example.com/example.com.key",
			"certificates/ca/other.org", "certificates/ca/other.org/other.org.crt",
		}},
		{"", false, []string{"acme", "certificates", "certificatesX", "top"}},
		{"top", false, nil}, // a file has nothing below it
	}
	for _, l := range lists {
		got, err := s.List(ctx, l.prefix, l.recursive)
		if err != nil || !slices.Equal(got, l.want) {
			t.Errorf("List(%q, %v) = %q, %v; want %q", l.prefix, l.recursive, got, err, l.want)
		}
	}
	for _, k := range []string{"missing", "certif", "certificates/c"} {
		if _, err := s.List(ctx, k, true); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("List(%q) err = %v; want fs.ErrNotExist", k, err)
		}
	}

	before := time.Now().Add(-time.Minute)
	ki, err := s.Stat(ctx, "certificates/ca/example.com/example.com.key")
	if err != nil || !ki.IsTerminal || ki.Size != 3 || ki.Key != "certificates/ca/example.com/example.com.key" || ki.Modified.Before(before) {
		t.Errorf("Stat(file) = %+v, %v", ki, err)
	}
	ki, err = s.Stat(ctx, "certificates/ca")
	if err != nil || ki.IsTerminal || ki.Key != "certificates/ca" || ki.Modified.Before(before) {
		t.Errorf("Stat(dir) = %+v, %v", ki, err)
	}
	if _, err := s.Stat(ctx, "certif"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(missing) err = %v; want fs.ErrNotExist", err)
	}

	// Delete a file, a directory, a missing key.
	if err := s.Delete(ctx, "certificates/ca/other.org/other.org.crt"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/other.org") {
		t.Error("directory left after its last file was deleted")
	}
	if err := s.Delete(ctx, "certificates"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/example.com/example.com.crt") || !s.Exists(ctx, "certificatesX/not-below-certificates") {
		t.Error("Delete(directory) removed the wrong keys")
	}
	if err := s.Delete(ctx, "never-was"); err != nil {
		t.Errorf("Delete(missing) = %v; want nil", err)
	}
	for _, bad := range []string{"", "/abs", "trailing/"} {
		if err := s.Store(ctx, bad, []byte("x")); err == nil {
			t.Errorf("Store(%q) accepted", bad)
		}
	}

	// Binary values survive, including empty and large ones.
	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 1<<18)
	if err := s.Store(ctx, "bin", big); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, "bin"); err != nil || !bytes.Equal(got, big) {
		t.Errorf("1 MiB binary value did not round-trip (%d bytes, %v)", len(got), err)
	}
}

// TestPostgresSharedBetweenInstances: what one node stores another loads.
func TestPostgresSharedBetweenInstances(t *testing.T) {
	ctx := context.Background()
	dsn := pg.DB(t)
	a, b := open(t, dsn, PostgresOptions{}), open(t, dsn, PostgresOptions{})
	if err := a.Store(ctx, "k/v", []byte("from a")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Load(ctx, "k/v"); err != nil || string(got) != "from a" {
		t.Errorf("b.Load = %q, %v", got, err)
	}
}

// TestPostgresContextCancelled: every method honours a cancelled context.
func TestPostgresContextCancelled(t *testing.T) {
	s := open(t, pg.DB(t), PostgresOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Store(ctx, "a", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Store = %v", err)
	}
	if _, err := s.Load(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Load = %v", err)
	}
	if _, err := s.List(ctx, "a", true); !errors.Is(err, context.Canceled) {
		t.Errorf("List = %v", err)
	}
	if _, err := s.Stat(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat = %v", err)
	}
	if err := s.Delete(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete = %v", err)
	}
	if err := s.Lock(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock = %v", err)
	}
}

// TestPostgresLockContention: two instances on one database exclude each
// other; TryLock reports a held lock at once; Unlock hands the lock over to
// a waiter; a Lock waiting on a held lock returns when its context ends;
// Unlock of a lock not held is an error and does not release the holder's.
func TestPostgresLockContention(t *testing.T) {
	ctx := context.Background()
	dsn := pg.DB(t)
	o := PostgresOptions{Lease: 3 * time.Second, Poll: 50 * time.Millisecond}
	a, b := open(t, dsn, o), open(t, dsn, o)

	if err := a.Lock(ctx, "issue_cert_example.com"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_example.com"); ok || err != nil {
		t.Fatalf("b.TryLock on a's lock = %v, %v; want false, nil", ok, err)
	}
	if ok, err := a.TryLock(ctx, "issue_cert_example.com"); ok || err != nil {
		t.Fatalf("a.TryLock on its own held lock = %v, %v; want false (it excludes within a node too)", ok, err)
	}
	if err := b.Unlock(ctx, "issue_cert_example.com"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("b.Unlock of a's lock = %v; want ErrNotHeld", err)
	}

	// A waiter gives up when its context ends.
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	err := b.Lock(wctx, "issue_cert_example.com")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b.Lock with a 300ms deadline = %v; want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*300*time.Millisecond {
		t.Errorf("b.Lock returned %v after its 300ms deadline", d)
	}

	// The lock is held past several renewals (lease 3s, renewed every 1s)
	// and handed to a waiter at Unlock.
	got := make(chan error, 1)
	var mu sync.Mutex
	var acquired time.Time
	go func() {
		err := b.Lock(ctx, "issue_cert_example.com")
		mu.Lock()
		acquired = time.Now()
		mu.Unlock()
		got <- err
	}()
	time.Sleep(4 * time.Second) // past the lease: renewals keep it a's
	select {
	case err := <-got:
		t.Fatalf("b took a's lock while a was renewing it (err %v)", err)
	default:
	}
	released := time.Now()
	if err := a.Unlock(ctx, "issue_cert_example.com"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	t.Logf("waiter took the lock %v after Unlock (poll 50ms)", acquired.Sub(released).Round(time.Millisecond))
	mu.Unlock()
	if err := b.Unlock(ctx, "issue_cert_example.com"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, "issue_cert_example.com"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("second Unlock = %v; want ErrNotHeld", err)
	}
}

// TestPostgresLockTakeover: a node that crashed holding a lock (its pool
// closed without Unlock, so its lease stops being renewed) blocks the others
// for one lease, then its lock is taken over; its late Unlock does not
// release the new holder's lock.
func TestPostgresLockTakeover(t *testing.T) {
	ctx := context.Background()
	dsn := pg.DB(t)
	const lease = 900 * time.Millisecond
	o := PostgresOptions{Lease: lease, Poll: 20 * time.Millisecond}
	crashed, survivor := open(t, dsn, o), open(t, dsn, o)

	if err := crashed.Lock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	// Crash: renewals stop and the connections go, the row stays.
	crashed.mu.Lock()
	l := crashed.held["issue_cert_a.example"]
	crashed.mu.Unlock()
	l.stop()
	<-l.done
	crashed.pool.Close()
	crashedAt := time.Now()

	if err := survivor.Lock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	waited := time.Since(crashedAt)
	t.Logf("lock taken over %v after the holder crashed (lease %v)", waited.Round(time.Millisecond), lease)
	if waited > 2*lease+time.Second {
		t.Errorf("takeover took %v; want about one lease (%v)", waited, lease)
	}

	// The crashed node cannot release the survivor's lock: its row is gone.
	var owner string
	if err := survivor.pool.QueryRow(ctx, `SELECT owner FROM tlsedge_locks WHERE name = $1`, "issue_cert_a.example").Scan(&owner); err != nil || owner != survivor.Owner() {
		t.Fatalf("lock row owner = %q, %v; want the survivor %q", owner, err, survivor.Owner())
	}
	// A stale instance whose renewal stopped (simulated on the survivor's
	// pool with the crashed owner name) deletes nothing.
	tag, err := survivor.pool.Exec(ctx, `DELETE FROM tlsedge_locks WHERE name = $1 AND owner = $2`, "issue_cert_a.example", crashed.Owner())
	if err != nil || tag.RowsAffected() != 0 {
		t.Errorf("the crashed owner's delete removed %d rows (%v)", tag.RowsAffected(), err)
	}
	if err := survivor.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresLeaseLost: a holder that stalls past its lease (renewal
// stopped) and whose lock is taken over learns so at Unlock, which deletes
// nothing of the new holder's.
func TestPostgresLeaseLost(t *testing.T) {
	ctx := context.Background()
	dsn := pg.DB(t)
	o := PostgresOptions{Lease: 600 * time.Millisecond, Poll: 20 * time.Millisecond}
	slow, other := open(t, dsn, o), open(t, dsn, o)
	if err := slow.Lock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	slow.mu.Lock()
	l := slow.held["n"]
	slow.mu.Unlock()
	l.stop() // stalled: no more renewals, but still believes it holds n
	<-l.done
	if err := other.Lock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if err := slow.Unlock(ctx, "n"); !errors.Is(err, ErrNotHeld) || !strings.Contains(err.Error(), "another node took it") {
		t.Errorf("stale Unlock = %v; want ErrNotHeld naming the takeover", err)
	}
	if ok, _ := slow.TryLock(ctx, "n"); ok {
		t.Error("other's lock was released by the stale Unlock")
	}
	if err := other.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresCloseReleasesLocks: Close releases what the node holds, so
// the others need not wait a lease after an orderly stop.
func TestPostgresCloseReleasesLocks(t *testing.T) {
	ctx := context.Background()
	dsn := pg.DB(t)
	o := PostgresOptions{Lease: time.Minute}
	a, b := open(t, dsn, o), open(t, dsn, o)
	if err := a.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if ok, err := b.TryLock(ctx, "x"); !ok || err != nil {
		t.Fatalf("TryLock after the holder closed = %v, %v; want true", ok, err)
	}
	b.Unlock(ctx, "x")
}
