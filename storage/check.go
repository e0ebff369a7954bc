package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Check is one line of `tlsedge check` for the storage option.
type Check struct {
	What   string // "connect", "schema" or "lock"
	OK     bool
	Detail string
}

// String is the line as `tlsedge check` prints it.
func (c Check) String() string {
	status := "ok  "
	if !c.OK {
		status = "FAIL"
	}
	return fmt.Sprintf("%s storage %s: %s", status, c.What, c.Detail)
}

// checkLock is the lock name CheckPostgres takes and releases.
const checkLock = "tlsedge_check"

// CheckPostgres verifies what a node needs from the database at dsn without
// changing it: that it connects (address, database, user and password), the
// schema version (a missing or older schema is fine, nodes migrate it at
// start; a newer one is not), and that a lock can be taken and released.
// When the schema is not current yet, the migrations and the lock run in a
// transaction that is rolled back, which still proves the user may create
// the tables. The error is set when a check failed; it names the storage
// option and says what to do.
func CheckPostgres(ctx context.Context, dsn string, o PostgresOptions) ([]Check, error) {
	var out []Check
	p, err := ConnectPostgres(ctx, dsn, o)
	if err != nil {
		c := Check{What: "connect", Detail: connectAdvice(err)}
		return append(out, c), errors.New("storage: " + c.Detail)
	}
	defer p.Close()
	out = append(out, Check{What: "connect", OK: true, Detail: "connected to " + p.where})

	v, err := p.CurrentVersion(ctx)
	switch {
	case err != nil:
		c := Check{What: "schema", Detail: err.Error()}
		return append(out, c), errors.New("storage: " + c.Detail)
	case v > SchemaVersion:
		c := Check{What: "schema", Detail: newerSchema(v).Error()}
		return append(out, c), errors.New("storage: " + c.Detail)
	case v == SchemaVersion:
		out = append(out, Check{What: "schema", OK: true, Detail: fmt.Sprintf("version %d, current", v)})
		ok, err := p.TryLock(ctx, checkLock)
		switch {
		case err != nil:
			c := Check{What: "lock", Detail: err.Error() + " (the user needs INSERT, UPDATE and DELETE on tlsedge_locks)"}
			return append(out, c), errors.New("storage: " + c.Detail)
		case !ok:
			out = append(out, Check{What: "lock", OK: true, Detail: "held by another tlsedge check right now; the lock table answers"})
			return out, nil
		}
		if err := p.Unlock(ctx, checkLock); err != nil {
			c := Check{What: "lock", Detail: err.Error()}
			return append(out, c), errors.New("storage: " + c.Detail)
		}
		return append(out, Check{What: "lock", OK: true, Detail: "taken and released"}), nil
	}
	// An older or missing schema: migrate and lock in a transaction that is
	// rolled back.
	if err := p.dryRun(ctx); err != nil {
		c := Check{What: "schema", Detail: fmt.Sprintf("version %d; migrating to %d fails: %v", v, SchemaVersion, err)}
		return append(out, c), errors.New("storage: " + c.Detail)
	}
	out = append(out, Check{What: "schema", OK: true, Detail: fmt.Sprintf("version %d; tlsedge migrates it to %d at start (verified in a rolled-back transaction)", v, SchemaVersion)})
	return append(out, Check{What: "lock", OK: true, Detail: "taken and released (in the rolled-back transaction)"}), nil
}

// dryRun migrates and takes and releases a lock in a transaction it rolls
// back.
func (p *Postgres) dryRun(ctx context.Context) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := migrateTx(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO tlsedge_locks (name, owner, expires) VALUES ($1, $2, now() + interval '1 minute')`, checkLock, p.owner); err != nil {
		return fmt.Errorf("taking a lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM tlsedge_locks WHERE name = $1 AND owner = $2`, checkLock, p.owner); err != nil {
		return fmt.Errorf("releasing a lock: %w", err)
	}
	return nil
}

// connectAdvice turns a connection failure into what to do about it.
func connectAdvice(err error) string {
	msg := strings.TrimPrefix(err.Error(), "storage: ")
	var pe *pgconn.PgError
	var ne net.Error
	switch {
	case errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000"):
		return msg + ": the password is wrong or missing; give it in PGPASSWORD, a PGPASSFILE or ~/.pgpass line for this host, port, database and user (keep it out of the URL, which shows in process listings)"
	case errors.As(err, &pe) && pe.Code == "3D000":
		return msg + ": the database does not exist; create it (createdb) or fix the URL's path"
	case errors.As(err, &ne) || strings.Contains(msg, "connect: connection refused") || strings.Contains(msg, "no such host"):
		return msg + ": the server is unreachable; check the URL's host and port and that PostgreSQL listens there"
	}
	return msg + ": check the storage URL and that PostgreSQL accepts this user"
}
