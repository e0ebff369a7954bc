package storage

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func versions(t *testing.T, p *Postgres) []int {
	t.Helper()
	rows, err := p.pool.Query(context.Background(), `SELECT version FROM tlsedge_schema ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		rows.Scan(&v)
		out = append(out, v)
	}
	return out
}

// TestMigrateFreshAndAgain: a fresh database gets every migration once;
// migrating an up-to-date schema changes nothing and keeps the data.
func TestMigrateFreshAndAgain(t *testing.T) {
	ctx := context.Background()
	dsn := pg.DB(t)
	p, err := ConnectPostgres(ctx, dsn, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if v, err := p.CurrentVersion(ctx); err != nil || v != 0 {
		t.Fatalf("fresh database version = %d, %v; want 0", v, err)
	}
	if err := p.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := p.CurrentVersion(ctx); err != nil || v != SchemaVersion {
		t.Fatalf("version after Migrate = %d, %v; want %d", v, err, SchemaVersion)
	}
	if err := p.Store(ctx, "kept", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := p.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if got := versions(t, p); len(got) != SchemaVersion {
		t.Errorf("tlsedge_schema rows = %v; want one per migration", got)
	}
	if v, err := p.Load(ctx, "kept"); err != nil || string(v) != "1" {
		t.Errorf("data lost by a second Migrate: %q, %v", v, err)
	}
}

// TestMigrateConcurrent: nodes starting at once all succeed and the
// migrations run once (without the advisory lock, CREATE TABLE races fail
// with duplicate key errors in pg_type).
func TestMigrateConcurrent(t *testing.T) {
	dsn := pg.DB(t)
	const nodes = 6
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	ps := make(chan *Postgres, nodes)
	start := make(chan struct{})
	for range nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := ConnectPostgres(ctx, dsn, PostgresOptions{})
			if err != nil {
				errs <- err
				return
			}
			ps <- p
			<-start
			errs <- p.Migrate(ctx)
		})
	}
	time.Sleep(200 * time.Millisecond)
	close(start)
	wg.Wait()
	close(errs)
	close(ps)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var one *Postgres
	for p := range ps {
		defer p.Close()
		one = p
	}
	if got := versions(t, one); len(got) != SchemaVersion {
		t.Errorf("tlsedge_schema rows = %v; want one per migration", got)
	}
}

// TestMigrateNewerSchema: a schema from a newer tlsedge is refused, naming
// what to do.
func TestMigrateNewerSchema(t *testing.T) {
	ctx := context.Background()
	p := open(t, pg.DB(t), PostgresOptions{})
	if _, err := p.pool.Exec(ctx, `INSERT INTO tlsedge_schema (version) VALUES ($1)`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	err := p.Migrate(ctx)
	if err == nil || !strings.Contains(err.Error(), "newer than this tlsedge") || !strings.Contains(err.Error(), "upgrade tlsedge") {
		t.Fatalf("Migrate on a newer schema = %v", err)
	}
}
