package tlsadapter

import (
	"context"
	"net"
	"strings"
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

// pebbleOnPostgres starts a PostgreSQL server with an empty database and
// pebble, and returns the database's URL and options pointing at pebble.
// Nodes get the database through acmeNode.Storage (pgNode).
func pebbleOnPostgres(t *testing.T, cfg integration.PebbleConfig, challenges ...string) (*integration.Pebble, ACMEOptions, string) {
	t.Helper()
	pgs := testenv.Postgres(t)
	dsn := pgs.CreateDB(t, "cluster")
	pb := integration.StartPebble(t, cfg)
	o := pebbleOptions(t, pb, challenges...)
	o.Storage = "" // acme_storage would name a directory instead
	return pb, o, dsn
}

// pgNodeN is a cluster node on dsn: its own pool and a logger naming it.
func pgNodeN(t *testing.T, dsn string, n int) acmeNode {
	return acmeNode{Storage: pgNode(t, dsn), Log: testLogger(t).With("node", n)}
}

// TestACMEPostgresSecondNode: node 1 obtains a certificate from pebble into
// PostgreSQL; node 2, with its own pool and an empty data directory, serves
// the same certificate at start-up without placing an order.
func TestACMEPostgresSecondNode(t *testing.T) {
	pb, o, dsn := pebbleOnPostgres(t, integration.PebbleConfig{}, ChallengeHTTP01)
	o.Domains = []string{"pg.example.com"}

	n1, err := pgNodeN(t, dsn, 1).start(t, 0, o)
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
	n2, err := pgNodeN(t, dsn, 2).start(t, 0, o2)
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
	pb, o, dsn := pebbleOnPostgres(t, integration.PebbleConfig{}, ChallengeHTTP01)
	o.Domains = []string{"together.example.com"}
	o2 := o
	o2.Challenges = []string{ChallengeTLSALPN01}

	node1, node2 := pgNodeN(t, dsn, 1), pgNodeN(t, dsn, 2)
	var wg sync.WaitGroup
	var n1, n2 *acmeTestServer
	var err1, err2 error
	start := time.Now()
	wg.Go(func() { n1, err1 = node1.start(t, 0, o) })
	wg.Go(func() { n2, err2 = node2.start(t, pb.TLSPort, o2) })
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

// TestACMEPostgresProbesReachAnyNode: three nodes behind a TCP balancer on
// pebble's tls-alpn-01 port, built in the server's order (listen, build the
// adapter, accept, Start) and started together. One order is placed, and
// pebble's probes, dealt one per node by the balancer, are each answered by
// Wrap on the node they reach: on the two that did not place the order,
// from the challenge the orderer put in the shared storage.
func TestACMEPostgresProbesReachAnyNode(t *testing.T) {
	ports := make([]int, 3)
	var backends []string
	for i := range ports {
		ports[i] = integration.FreePort(t)
		backends = append(backends, integration.HostPort(ports[i]))
	}
	lbPort := integration.FreePort(t)
	pb, o, dsn := pebbleOnPostgres(t, integration.PebbleConfig{TLSPort: lbPort}, ChallengeTLSALPN01)
	lb := integration.StartBalancer(t, lbPort, backends...)
	o.Domains = []string{"probes.example.com"}

	servers := make([]*acmeTestServer, len(ports))
	for i, port := range ports {
		ln, err := net.Listen("tcp", integration.HostPort(port))
		if err != nil {
			t.Fatal(err)
		}
		ad, err := pgNodeN(t, dsn, i+1).adapter(t, port, o)
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		servers[i] = serveACME(t, ad, ln)
	}
	if pb.Orders() != 0 {
		t.Fatal("a factory placed an order though its listener was not accepting")
	}
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { errs[i] = s.t.Adapter().(ACMEStarter).Start(context.Background()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	if n := pb.Orders(); n != 1 {
		t.Errorf("pebble saw %d orders, want 1", n)
	}
	roots := pb.Roots(t)
	var serials []string
	var obtained int64
	for i, s := range servers {
		leaf, err := s.get("probes.example.com", roots)
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		serials = append(serials, leaf.SerialNumber.Text(16))
		st := s.a.ACMEStats()
		obtained += st.Obtained
		t.Logf("node %d: obtained %d, probes answered %d, serial %s", i+1, st.Obtained, s.probes.Load(), serials[i])
		if s.probes.Load() == 0 {
			t.Errorf("node %d answered no probe (balancer: %v)", i+1, lb.Counts())
		}
	}
	if serials[0] != serials[1] || serials[1] != serials[2] {
		t.Errorf("nodes serve different certificates: %v", serials)
	}
	if obtained != 1 {
		t.Errorf("obtained %d between the nodes, want 1", obtained)
	}
	if strings.Contains(pb.Log(), "set INVALID") {
		t.Error("a validation failed")
	}
}

// signalWriter passes log output on to the test and closes seen the first
// time a line contains want.
type signalWriter struct {
	t    testing.TB
	want string
	once sync.Once
	seen chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return testWriter{w.t}.Write(p)
}

// TestACMEPostgresWaitingNodeAnswersProbes: a node whose start-up obtain
// waits on a lock another node holds still answers that node's tls-alpn-01
// probes. Node 1 takes the issue lock and orders, validated by tls-alpn-01
// through the balancer (it enables only that, so the test knows how its
// order is validated). Node 2, with both challenges as a cluster node
// usually has, starts meanwhile on its already bound listener and waits for
// the same lock. The balancer holds pebble's probes until node 2 waits, then
// deals them to both nodes. Before, node 2's start-up obtain ran in the
// factory, before the server accepts (http-01 needs no accepting listener),
// so the probes dealt to it sat in the listen backlog until pebble gave up
// after 15 s and failed node 1's order.
func TestACMEPostgresWaitingNodeAnswersProbes(t *testing.T) {
	p1, p2, lbPort := integration.FreePort(t), integration.FreePort(t), integration.FreePort(t)
	pb, o, dsn := pebbleOnPostgres(t, integration.PebbleConfig{TLSPort: lbPort}, ChallengeHTTP01, ChallengeTLSALPN01)
	o.Domains = []string{"waiting.example.com"}
	lb := integration.StartBalancer(t, lbPort, integration.HostPort(p1), integration.HostPort(p2))
	lb.Hold()
	ctx := context.Background()

	o1 := o
	o1.Challenges = []string{ChallengeTLSALPN01}
	ln1, err := net.Listen("tcp", integration.HostPort(p1))
	if err != nil {
		t.Fatal(err)
	}
	ad1, err := pgNodeN(t, dsn, 1).adapter(t, p1, o1)
	if err != nil {
		ln1.Close()
		t.Fatal(err)
	}
	s1 := serveACME(t, ad1, ln1)
	start1 := make(chan error, 1)
	go func() { start1 <- ad1.Adapter().(ACMEStarter).Start(ctx) }()
	for deadline := time.Now().Add(20 * time.Second); lb.Waiting() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pebble's probes did not reach the balancer (%d waiting)", lb.Waiting())
		}
	}

	// Node 2 starts the way the server starts it: listener bound first.
	log2 := &signalWriter{t: t, want: "acquiring lock", seen: make(chan struct{})}
	node2 := acmeNode{Storage: pgNode(t, dsn), Log: testLoggerTo(log2).With("node", 2)}
	ln2, err := net.Listen("tcp", integration.HostPort(p2))
	if err != nil {
		t.Fatal(err)
	}
	var s2 *acmeTestServer
	start2 := make(chan error, 1)
	go func() {
		ad2, err := node2.adapter(t, p2, o)
		if err != nil {
			ln2.Close()
			start2 <- err
			return
		}
		s2 = serveACME(t, ad2, ln2)
		start2 <- ad2.Adapter().(ACMEStarter).Start(ctx)
	}()
	select {
	case <-log2.seen:
	case err := <-start2:
		t.Fatalf("node 2 started without waiting for node 1's lock: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("node 2 never asked for the issue lock")
	}
	time.Sleep(100 * time.Millisecond) // into its wait
	lb.Release()

	begin := time.Now()
	if err := <-start1; err != nil {
		t.Fatalf("node 1's order failed after %s: %v", time.Since(begin).Round(time.Millisecond), err)
	}
	t.Logf("node 1 obtained %s after the probes were released", time.Since(begin).Round(time.Millisecond))
	if err := <-start2; err != nil {
		t.Fatalf("node 2: %v", err)
	}
	if s2.probes.Load() == 0 {
		t.Errorf("node 2 answered none of the probes (balancer: %v)", lb.Counts())
	}
	roots := pb.Roots(t)
	c1, err := s1.get("waiting.example.com", roots)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := s2.get("waiting.example.com", roots)
	if err != nil {
		t.Fatal(err)
	}
	if c1.SerialNumber.Cmp(c2.SerialNumber) != 0 {
		t.Errorf("nodes serve different certificates: %x, %x", c1.SerialNumber, c2.SerialNumber)
	}
	if n := pb.Orders(); n != 1 || strings.Contains(pb.Log(), "set INVALID") {
		t.Errorf("pebble saw %d orders (want 1), or a failed validation", n)
	}
}
