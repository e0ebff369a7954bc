package storage

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are the schema's versions in order: migrations[i] takes the
// schema from version i to i+1. Append only: a released migration never
// changes, since nodes of a cluster may run different tlsedge releases.
var migrations = []string{
	// 1: keys and values; locks as leases.
	`CREATE TABLE tlsedge_kv (
		key      text PRIMARY KEY,
		value    bytea NOT NULL,
		modified timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE tlsedge_locks (
		name    text PRIMARY KEY,
		owner   text NOT NULL,
		expires timestamptz NOT NULL
	);`,
}

// SchemaVersion is the schema version this tlsedge creates.
var SchemaVersion = len(migrations)

// migrationLock is the pg_advisory_xact_lock key that serialises migrations
// across nodes starting at once ("tlsedge" in ASCII).
const migrationLock = 0x746c73656467650

// Migrate brings the schema to SchemaVersion: the tlsedge_schema table
// records the version, and each missing migration runs in order, all in one
// transaction under an advisory lock, so nodes starting together migrate
// once and a failed migration leaves nothing half done. A schema newer than
// this tlsedge knows is an error: an older node must not write under a newer
// layout.
func (p *Postgres) Migrate(ctx context.Context) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("storage: %s: migrating the schema: %w", p.where, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	from, err := migrateTx(ctx, tx)
	if err != nil {
		return fmt.Errorf("storage: %s: %w", p.where, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("storage: %s: committing the schema migration: %w", p.where, err)
	}
	if from < SchemaVersion {
		p.log.Info("storage: schema migrated", "from", from, "to", SchemaVersion)
	}
	return nil
}

// migrateTx runs the missing migrations in tx and returns the version found.
func migrateTx(ctx context.Context, tx pgx.Tx) (int, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return 0, fmt.Errorf("taking the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS tlsedge_schema (
		version integer PRIMARY KEY,
		applied timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, fmt.Errorf("creating tlsedge_schema: %w (does the user have CREATE on the database's schema?)", err)
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM tlsedge_schema`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the schema version: %w", err)
	}
	if v > SchemaVersion {
		return v, newerSchema(v)
	}
	for i := v; i < SchemaVersion; i++ {
		if _, err := tx.Exec(ctx, migrations[i]); err != nil {
			return v, fmt.Errorf("schema migration %d: %w", i+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tlsedge_schema (version) VALUES ($1)`, i+1); err != nil {
			return v, fmt.Errorf("schema migration %d: %w", i+1, err)
		}
	}
	return v, nil
}

func newerSchema(v int) error {
	return fmt.Errorf("the schema is at version %d, newer than this tlsedge knows (%d): upgrade tlsedge on this node", v, SchemaVersion)
}

// CurrentVersion reads the schema version: 0 when no node has created it.
func (p *Postgres) CurrentVersion(ctx context.Context) (int, error) {
	var v int
	err := p.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM tlsedge_schema`).Scan(&v)
	if missingTable(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: %s: reading the schema version: %w", p.where, err)
	}
	return v, nil
}
