package tlsadapter

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tlsedge/integration"
	"tlsedge/internal/testenv"
	"tlsedge/storage"
)

// pgNode is one tlsedge node of a cluster: its own connection pool (and
// lock owner) on the shared database.
func pgNode(t *testing.T, dsn string) *storage.Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := storage.OpenPostgres(ctx, dsn, storage.PostgresOptions{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// startPGNode is startACMEServer with Params.Storage set and acme_storage
// unset: the adapter keeps everything in the shared database.
func startPGNode(t *testing.T, port int, o ACMEOptions, st *storage.Postgres, log *slog.Logger) (*acmeTestServer, error) {
	t.Helper()
	if port == 0 {
		port = integration.FreePort(t)
	}
	o.Storage = ""
	ad, err := NewRegistry().New(context.Background(), "acme", Params{
		Options: Options{SSLModule: "acme", ACME: o},
		Logger:  log,
		Host:    "127.0.0.1",
		Port:    port,
		DataDir: t.TempDir(), // per node: nothing of the certificate may come from here
		Storage: st,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", integration.HostPort(port))
	if err != nil {
		ad.Close()
		t.Fatal(err)
	}
	return serveACME(t, ad, ln), nil
}

// TestACMEPostgresSecondNode: node 1 obtains a certificate from pebble into
// PostgreSQL; node 2, with its own pool and an empty data directory, serves
// the same certificate at start-up without placing an order.
func TestACMEPostgresSecondNode(t *testing.T) {
	pgs := testenv.Postgres(t)
	dsn := pgs.CreateDB(t, "cluster")
	pb := integration.StartPebble(t, integration.PebbleConfig{})
	o := pebbleOptions(t, pb, ChallengeHTTP01)
	o.Domains = []string{"pg.example.com"}
	o.Storage = "" // acme_storage would name a directory instead

	n1, err := startPGNode(t, 0, o, pgNode(t, dsn), testLogger(t).With("node", 1))
	if err != nil {
		t.Fatal(err)
	}
	roots := pb.Roots(t)
	first, err := n1.get("pg.example.com", roots)
	if err != nil {
		t.Fatal(err)
	}
	if pb.Orders() != 1 {
		t.Fatalf("orders %d after node 1, want 1", pb.Orders())
	}

	// Node 2 runs beside node 1 (tls-alpn-01 only, so it needs no port
	// 80 of its own; it must need no challenge at all).
	o2 := o
	o2.Challenges = []string{ChallengeTLSALPN01}
	n2, err := startPGNode(t, 0, o2, pgNode(t, dsn), testLogger(t).With("node", 2))
	if err != nil {
		t.Fatal(err)
	}
	again, err := n2.get("pg.example.com", roots)
	if err != nil {
		t.Fatal(err)
	}
	if first.SerialNumber.Cmp(again.SerialNumber) != 0 {
		t.Errorf("node 2 serves serial %x, node 1 %x: want the stored certificate", again.SerialNumber, first.SerialNumber)
	}
	if n := pb.Orders(); n != 1 {
		t.Errorf("pebble saw %d orders, want 1 (node 2 must load the certificate from PostgreSQL)", n)
	}
	if st := n2.a.ACMEStats(); st.Obtained != 0 || st.Names[0].State != "valid" {
		t.Errorf("node 2 stats %+v", st)
	}

	// tlsedge check reads the name from the database too.
	checks, err := CheckACME(context.Background(), Params{Options: Options{ACME: o2}, Storage: pgNode(t, dsn), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		t.Log(c)
	}
	if len(checks) != 3 || checks[2].Name == nil || checks[2].Name.State != "valid" || checks[2].Name.Serial != first.SerialNumber.Text(16) {
		t.Errorf("CheckACME on PostgreSQL: %+v", checks)
	}

	// The storage watch works on PostgreSQL: with the table gone, writes
	// fail and are counted; the certificate is still served.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ALTER TABLE tlsedge_kv RENAME TO tlsedge_kv_away`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed storage check on node 2", func() bool { return n2.a.ACMEStats().StorageFailed > 0 })
	if _, err := n2.get("pg.example.com", roots); err != nil {
		t.Errorf("cached certificate not served during the outage: %v", err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE tlsedge_kv_away RENAME TO tlsedge_kv`); err != nil {
		t.Fatal(err)
	}
}

// TestACMEPostgresNodesStartTogether: two nodes starting at once on an
// empty database place one order between them: the one that takes the
// issue lock orders, the other waits on the lock and then loads.
func TestACMEPostgresNodesStartTogether(t *testing.T) {
	pgs := testenv.Postgres(t)
	dsn := pgs.CreateDB(t, "cluster")
	pb := integration.StartPebble(t, integration.PebbleConfig{})
	o := pebbleOptions(t, pb, ChallengeHTTP01)
	o.Domains = []string{"together.example.com"}
	o2 := o
	o2.Challenges = []string{ChallengeTLSALPN01}

	st1, st2 := pgNode(t, dsn), pgNode(t, dsn)
	var wg sync.WaitGroup
	var n1, n2 *acmeTestServer
	var err1, err2 error
	start := time.Now()
	wg.Go(func() { n1, err1 = startPGNode(t, 0, o, st1, testLogger(t).With("node", 1)) })
	wg.Go(func() { n2, err2 = startPGNode(t, pb.TLSPort, o2, st2, testLogger(t).With("node", 2)) })
	wg.Wait()
	if err1 != nil || err2 != nil {
		t.Fatalf("node 1: %v; node 2: %v", err1, err2)
	}
	t.Logf("both nodes ready %v after start", time.Since(start).Round(time.Millisecond))
	roots := pb.Roots(t)
	c1, err := n1.get("together.example.com", roots)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := n2.get("together.example.com", roots)
	if err != nil {
		t.Fatal(err)
	}
	if c1.SerialNumber.Cmp(c2.SerialNumber) != 0 {
		t.Errorf("nodes serve different certificates: %x, %x", c1.SerialNumber, c2.SerialNumber)
	}
	if n := pb.Orders(); n != 1 {
		t.Errorf("pebble saw %d orders, want 1", n)
	}
	if got := n1.a.ACMEStats().Obtained + n2.a.ACMEStats().Obtained; got != 1 {
		t.Errorf("obtained %d between the nodes, want 1", got)
	}
}
