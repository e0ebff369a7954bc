package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of PostgresOptions.
const (
	DefaultLease = 30 * time.Second
	DefaultPoll  = time.Second
)

// PostgresOptions tune a Postgres storage; the zero value is the defaults.
type PostgresOptions struct {
	// Lease is how long a lock outlives its holder's last renewal: a node
	// that crashes holding a lock blocks the others this long at most. The
	// holder renews every Lease/3. Zero means DefaultLease.
	Lease time.Duration
	// Poll is how often a Lock waiting for a held lock tries again. Zero
	// means DefaultPoll (or Lease/3 when that is shorter).
	Poll time.Duration
	// Logger receives lock renewal trouble; nil discards it.
	Logger *slog.Logger
}

// Postgres is a certmagic.Storage and TryLocker on PostgreSQL, shared by
// every tlsedge node that names the same database.
//
// Keys live in tlsedge_kv (key, value, modified); directories are implicit,
// as in certmagic's FileStorage: "a" is a directory when some key starts with
// "a/". Locks are leases in tlsedge_locks (name, owner, expires): a row is
// taken when absent or expired, renewed by its holder every Lease/3 while
// held, and deleted by Unlock only if the holder still owns it. Expiry is
// compared with the database's clock, so the nodes' clocks do not matter.
type Postgres struct {
	pool  *pgxpool.Pool
	where string // the URL with its password masked, for logs
	owner string // this instance in tlsedge_locks.owner
	lease time.Duration
	poll  time.Duration
	log   *slog.Logger

	ctx    context.Context // ends at Close: lease renewals
	cancel context.CancelFunc
	mu     sync.Mutex
	held   map[string]*lease
	wg     sync.WaitGroup
	closed sync.Once
}

// lease is one held lock's renewal.
type lease struct {
	stop context.CancelFunc
	done chan struct{}
}

// ErrNotHeld is returned by Unlock for a lock this instance does not hold
// (never taken, or its lease expired and another node took it).
var ErrNotHeld = errors.New("storage: lock not held by this node")

// ConnectPostgres opens a pool on dsn and checks that the database answers.
// It does not touch the schema: OpenPostgres also migrates it. The password
// comes from the URL or, as for every libpq client, from PGPASSWORD,
// PGPASSFILE or ~/.pgpass.
func ConnectPostgres(ctx context.Context, dsn string, o PostgresOptions) (*Postgres, error) {
	where := RedactDSN(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %v", where, unwrapAll(err))
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Poll <= 0 {
		o.Poll = min(DefaultPoll, o.Lease/3)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "tlsedge"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("storage: connecting to %s: %w", where, err)
	}
	p := &Postgres{pool: pool, where: where, owner: newOwner(), lease: o.Lease, poll: o.Poll,
		log: o.Logger.With("storage", where), held: map[string]*lease{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// OpenPostgres is ConnectPostgres followed by Migrate: what a serving node
// does.
func OpenPostgres(ctx context.Context, dsn string, o PostgresOptions) (*Postgres, error) {
	p, err := ConnectPostgres(ctx, dsn, o)
	if err != nil {
		return nil, err
	}
	if err := p.Migrate(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// newOwner names this instance in lock rows: host and pid for an operator
// reading the table, random bytes so two instances never share a name.
func newOwner() string {
	host, _ := os.Hostname()
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// String is where the storage is, password masked.
func (p *Postgres) String() string { return p.where }

// Owner is this instance's name in lock rows.
func (p *Postgres) Owner() string { return p.owner }

// Close stops lease renewals, releases the locks still held and closes the
// pool. Further calls do nothing.
func (p *Postgres) Close() {
	p.closed.Do(func() {
		p.mu.Lock()
		names := make([]string, 0, len(p.held))
		for n := range p.held {
			names = append(names, n)
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, n := range names {
			if err := p.Unlock(ctx, n); err != nil {
				p.log.Warn("storage: releasing a lock at close failed; it expires after its lease", "lock", n, "lease", p.lease, "err", err)
			}
		}
		p.cancel()
		p.wg.Wait()
		p.pool.Close()
	})
}

// missingTable reports a query on a schema not created yet: reads then see
// no keys rather than an error (tlsedge check reads before any node
// migrated).
func missingTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

func notExist(key string) error {
	return fmt.Errorf("storage: %q: %w", key, fs.ErrNotExist)
}

func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("storage: bad key %q: keys are non-empty with no leading or trailing '/'", key)
	}
	return nil
}

// Store implements certmagic.Storage.
func (p *Postgres) Store(ctx context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO tlsedge_kv (key, value, modified) VALUES ($1, $2, now())
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, modified = excluded.modified`, key, value)
	if err != nil {
		return fmt.Errorf("storage: storing %q: %w", key, err)
	}
	return nil
}

// Load implements certmagic.Storage: fs.ErrNotExist for a missing key.
func (p *Postgres) Load(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := p.pool.QueryRow(ctx, `SELECT value FROM tlsedge_kv WHERE key = $1`, key).Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || missingTable(err):
		return nil, notExist(key)
	case err != nil:
		return nil, fmt.Errorf("storage: loading %q: %w", key, err)
	}
	return v, nil
}

// Delete implements certmagic.Storage: the key and, as a directory,
// everything below it. A missing key is not an error.
func (p *Postgres) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	_, err := p.pool.Exec(ctx, `DELETE FROM tlsedge_kv WHERE key = $1 OR starts_with(key, $1 || '/')`, key)
	if err != nil && !missingTable(err) {
		return fmt.Errorf("storage: deleting %q: %w", key, err)
	}
	return nil
}

// Exists implements certmagic.Storage: key is a file or a directory.
func (p *Postgres) Exists(ctx context.Context, key string) bool {
	var ok bool
	err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tlsedge_kv WHERE key = $1 OR starts_with(key, $1 || '/'))`, key).Scan(&ok)
	return err == nil && ok
}

// List implements certmagic.Storage. Like FileStorage it returns full keys:
// the files and directories directly below prefix, or with recursive every
// file and directory at any depth. An empty prefix lists from the root. A
// prefix that is neither is fs.ErrNotExist; a file has nothing below it.
func (p *Postgres) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	var rows pgx.Rows
	var err error
	if prefix == "" {
		rows, err = p.pool.Query(ctx, `SELECT key FROM tlsedge_kv`)
	} else {
		rows, err = p.pool.Query(ctx, `SELECT key FROM tlsedge_kv WHERE key = $1 OR starts_with(key, $1 || '/')`, prefix)
	}
	if err != nil {
		if missingTable(err) {
			return nil, notExist(prefix)
		}
		return nil, fmt.Errorf("storage: listing %q: %w", prefix, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		if missingTable(err) {
			return nil, notExist(prefix)
		}
		return nil, fmt.Errorf("storage: listing %q: %w", prefix, err)
	}
	if len(keys) == 0 && prefix != "" {
		return nil, notExist(prefix)
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	base := prefix
	if base != "" {
		base += "/"
	}
	for _, k := range keys {
		if k == prefix {
			continue // the prefix itself, a file
		}
		rest := strings.TrimPrefix(k, base)
		parts := strings.Split(rest, "/")
		if !recursive {
			add(base + parts[0])
			continue
		}
		for i := range parts {
			add(base + strings.Join(parts[:i+1], "/"))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Stat implements certmagic.Storage: a stored key is terminal, with its size
// and time; a key that only prefixes others is a directory, modified when
// the newest key below it was.
func (p *Postgres) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	var size int64
	var mod time.Time
	err := p.pool.QueryRow(ctx, `SELECT length(value), modified FROM tlsedge_kv WHERE key = $1`, key).Scan(&size, &mod)
	if err == nil {
		return certmagic.KeyInfo{Key: key, Modified: mod, Size: size, IsTerminal: true}, nil
	}
	if missingTable(err) {
		return certmagic.KeyInfo{}, notExist(key)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return certmagic.KeyInfo{}, fmt.Errorf("storage: stat %q: %w", key, err)
	}
	var newest *time.Time
	err = p.pool.QueryRow(ctx, `SELECT max(modified) FROM tlsedge_kv WHERE starts_with(key, $1 || '/')`, key).Scan(&newest)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("storage: stat %q: %w", key, err)
	}
	if newest == nil {
		return certmagic.KeyInfo{}, notExist(key)
	}
	return certmagic.KeyInfo{Key: key, Modified: *newest, IsTerminal: false}, nil
}

// Lock implements certmagic.Locker: it waits, trying every Poll, until the
// lock is free or its holder's lease has expired, or ctx ends.
func (p *Postgres) Lock(ctx context.Context, name string) error {
	for {
		ok, err := p.TryLock(ctx, name)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("storage: waiting for lock %q: %w", name, context.Cause(ctx))
		case <-time.After(p.poll):
		}
	}
}

// TryLock implements certmagic.TryLocker: it takes the lock if nobody holds
// it or its holder's lease has expired, and then renews the lease every
// Lease/3 until Unlock or Close.
func (p *Postgres) TryLock(ctx context.Context, name string) (bool, error) {
	if err := p.ctx.Err(); err != nil {
		return false, errors.New("storage: closed")
	}
	p.mu.Lock()
	_, mine := p.held[name]
	p.mu.Unlock()
	if mine {
		// Another goroutine of this node holds it: the lock excludes
		// within a node as across nodes.
		return false, nil
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO tlsedge_locks (name, owner, expires)
		VALUES ($1, $2, now() + make_interval(secs => $3))
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
		WHERE tlsedge_locks.expires < now()`, name, p.owner, p.lease.Seconds())
	if err != nil {
		return false, fmt.Errorf("storage: taking lock %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	p.mu.Lock()
	if _, raced := p.held[name]; raced {
		// Two goroutines of this node both saw it free: only one row
		// update can have succeeded, and it was the other's renewal
		// target. Keep the first holder.
		p.mu.Unlock()
		return false, nil
	}
	rctx, stop := context.WithCancel(p.ctx)
	l := &lease{stop: stop, done: make(chan struct{})}
	p.held[name] = l
	p.mu.Unlock()
	p.wg.Add(1)
	go p.renew(rctx, name, l)
	return true, nil
}

// renew extends the lease on name every Lease/3 while held. A renewal that
// finds the row gone or someone else's (this node stalled past its lease)
// stops: the lock is lost, and Unlock will say so.
func (p *Postgres) renew(ctx context.Context, name string, l *lease) {
	defer p.wg.Done()
	defer close(l.done)
	t := time.NewTicker(p.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tag, err := p.pool.Exec(ctx, `UPDATE tlsedge_locks SET expires = now() + make_interval(secs => $3)
			WHERE name = $1 AND owner = $2`, name, p.owner, p.lease.Seconds())
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			p.log.Warn("storage: renewing a lock's lease failed; retrying", "lock", name, "lease", p.lease, "err", err)
		case tag.RowsAffected() == 0:
			p.log.Error("storage: lost a lock: its lease expired and another node took it", "lock", name, "lease", p.lease)
			return
		}
	}
}

// Unlock implements certmagic.Locker: it stops the renewal and deletes the
// lock row if this instance still owns it, never another node's.
func (p *Postgres) Unlock(ctx context.Context, name string) error {
	p.mu.Lock()
	l, ok := p.held[name]
	delete(p.held, name)
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotHeld, name)
	}
	l.stop()
	<-l.done
	tag, err := p.pool.Exec(ctx, `DELETE FROM tlsedge_locks WHERE name = $1 AND owner = $2`, name, p.owner)
	if err != nil {
		return fmt.Errorf("storage: releasing lock %q: %w (it expires after its lease, %s)", name, err, p.lease)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q: its lease expired and another node took it", ErrNotHeld, name)
	}
	return nil
}

var (
	_ certmagic.Storage   = (*Postgres)(nil)
	_ certmagic.TryLocker = (*Postgres)(nil)
)
