package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/internal/testenv"
	"tlsedge/storage"
)

// cluster is a few tlsedge nodes on loopback sharing one PostgreSQL, each
// with two servers (main and other) serving the same certificate for
// localhost, and a status: mount.
type cluster struct {
	t     *testing.T
	pg    *testenv.PostgresServer
	dsn   string
	ca    *testenv.CA
	conf  string // the nodes' configuration file
	nodes []*node
}

type node struct {
	p     *proc
	main  string // host:port of server main
	other string // host:port of server other
}

// startCluster starts n nodes with ssl_session_ticket_key_rotation rotation.
func startCluster(t *testing.T, n int, rotation string) *cluster {
	t.Helper()
	testenv.RequireTool(t, "openssl", "openssl")
	pg := testenv.Postgres(t)
	c := &cluster{t: t, pg: pg, dsn: pg.CreateDB(t, "tickets"), ca: testenv.NewCA(t, "tickets")}
	leaf := c.ca.Leaf(t, "localhost", "127.0.0.1")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "storage.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("5e", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "edge.conf")
	c.conf = conf
	writeFile(t, conf, fmt.Sprintf(`[global]
engine.storage = "%s"
engine.storage_key_file = "%s"
server.socket_host = "127.0.0.1"
server.socket_port = 0
server.ssl_module = "builtin"
server.ssl_certificate = ["%s"]
server.ssl_private_key = ["%s"]
server.ssl_session_ticket_key_rotation = "%s"
server.mount = ["/=text:hello", "/status=status:"]
server.other.socket_port = 0
`, c.dsn, keyFile, leaf.CertFile, leaf.KeyFile, rotation))
	// Started one after the other: the first makes the rings, the others
	// read them (nodes started at once race for the ring lock, which the
	// storage tests cover).
	for range n {
		p := start(t, "--config", conf)
		c.nodes = append(c.nodes, &node{p: p, main: strings.TrimPrefix(p.base("main"), "https://"), other: strings.TrimPrefix(p.base("other"), "https://")})
	}
	return c
}

// clientConfig trusts the cluster's CA and asks for localhost over TLS 1.3.
func (c *cluster) clientConfig(cache tls.ClientSessionCache) *tls.Config {
	return &tls.Config{RootCAs: c.ca.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS13, ClientSessionCache: cache}
}

// hello runs one request on a fresh connection to addr and reports whether
// the handshake resumed a session. The response is read to the end, so a
// session ticket the server sends after the handshake reaches the cache.
func hello(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(conn)
	if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("GET / on %s: %v\n%s", addr, err, b)
	}
	return conn.ConnectionState().DidResume
}

// oneTicket offers the first session it was given and only that one, so a
// test can present an old ticket after servers sent newer ones.
type oneTicket struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (o *oneTicket) Get(string) (*tls.ClientSessionState, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cs, o.cs != nil
}

func (o *oneTicket) Put(_ string, cs *tls.ClientSessionState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cs == nil && cs != nil {
		o.cs = cs
	}
}

// sClient runs openssl s_client against addr, saving the session to out
// and offering the one in in (either may be ""), and reports whether
// openssl says the session was reused.
func (c *cluster) sClient(addr, in, out string) bool {
	c.t.Helper()
	args := []string{"s_client", "-connect", addr, "-servername", "localhost", "-CAfile", c.ca.File(), "-verify_return_error", "-tls1_3", "-ign_eof"}
	if in != "" {
		args = append(args, "-sess_in", in)
	}
	if out != "" {
		args = append(args, "-sess_out", out)
	}
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	b, err := cmd.CombinedOutput()
	s := string(b)
	if err != nil || !strings.Contains(s, "HTTP/1.1 200") {
		c.t.Fatalf("openssl s_client to %s: %v\n%s", addr, err, s)
	}
	switch {
	case strings.Contains(s, "Reused, TLSv1.3"):
		return true
	case strings.Contains(s, "New, TLSv1.3"):
		return false
	}
	c.t.Fatalf("openssl s_client to %s says neither New nor Reused:\n%s", addr, s)
	return false
}

// clusterStatus reads node n's status JSON (cluster part) for server main.
type clusterJSON struct {
	Node              string    `json:"node"`
	Storage           string    `json:"storage"`
	StorageUp         bool      `json:"storage_up"`
	StorageLatency    float64   `json:"storage_latency_seconds"`
	StorageOutages    uint64    `json:"storage_outages"`
	TicketKeysRotated time.Time `json:"ticket_keys_rotated"`
	TicketKeysShared  bool      `json:"ticket_keys_shared"`
	Locks             []struct {
		Name, Owner string
	} `json:"locks"`
}

func (c *cluster) status(n *node) clusterJSON {
	c.t.Helper()
	body := c.getStatus(n, "/status?format=json")
	var s struct {
		Cluster *clusterJSON `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.Cluster == nil {
		c.t.Fatalf("status JSON: %v\n%s", err, body)
	}
	return *s.Cluster
}

func (c *cluster) getStatus(n *node, path string) string {
	c.t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c.clientConfig(nil), DisableKeepAlives: true}}
	code, body := get(c.t, hc, "https://"+n.main+path)
	if code != 200 {
		c.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
}

// waitRotation waits until every node serves a ticket key made after
// since, and returns the newest rotation time seen.
func (c *cluster) waitRotation(since []time.Time, within time.Duration) []time.Time {
	c.t.Helper()
	deadline := time.Now().Add(within)
	now := make([]time.Time, len(c.nodes))
	for {
		done := true
		for i, n := range c.nodes {
			now[i] = c.status(n).TicketKeysRotated
			if !now[i].After(since[i]) {
				done = false
			}
		}
		if done {
			return now
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the ticket keys did not rotate on every node within %v: %v (before: %v)", within, now, since)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTicketsResumeAcrossNodes: a TLS 1.3 session made on node A resumes on
// B and C (Go's client session cache, and openssl s_client -sess_out /
// -sess_in), the ticket keys being one ring the nodes share through
// PostgreSQL; a ticket of server main never resumes on server other, on
// the same node or another.
func TestTicketsResumeAcrossNodes(t *testing.T) {
	c := startCluster(t, 3, "1h")
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]

	cache := tls.NewLRUClientSessionCache(8)
	cfg := c.clientConfig(cache)
	if hello(t, a.main, cfg) {
		t.Fatal("the first handshake resumed")
	}
	for _, n := range []*node{b, cc, a} {
		if !hello(t, n.main, cfg) {
			t.Errorf("a session made on node A did not resume on %s", n.main)
		}
	}

	dir := t.TempDir()
	sess := filepath.Join(dir, "a.pem")
	if c.sClient(a.main, "", sess) {
		t.Fatal("openssl: the first handshake was reused")
	}
	for _, n := range []*node{b, cc} {
		if !c.sClient(n.main, sess, "") {
			t.Errorf("openssl: a session saved on node A was not reused on %s", n.main)
		}
	}

	// One ring per server: main's ticket opens on no other server.
	for _, addr := range []string{a.other, b.other} {
		one := &oneTicket{}
		if hello(t, a.main, c.clientConfig(one)) {
			t.Fatal("the first handshake resumed")
		}
		if hello(t, addr, c.clientConfig(one)) {
			t.Errorf("a ticket of server main resumed on server other (%s)", addr)
		}
		if c.sClient(addr, sess, "") {
			t.Errorf("openssl: a session of server main was reused on server other (%s)", addr)
		}
	}
	// And other's own ring works across nodes too.
	oc := tls.NewLRUClientSessionCache(8)
	hello(t, a.other, c.clientConfig(oc))
	if !hello(t, cc.other, c.clientConfig(oc)) {
		t.Error("a session of server other made on node A did not resume on node C's other")
	}

	// A node given another storage_key_file is refused at start.
	wrongKey := filepath.Join(t.TempDir(), "other.key")
	os.WriteFile(wrongKey, []byte(strings.Repeat("77", 32)), 0o600)
	code, _, stderr := run(t, "--config", c.conf, "--storage-key-file", wrongKey, "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "storage_key_file") || !strings.Contains(stderr, "give every node the same file") {
		t.Errorf("a node with another storage_key_file: exit %d, stderr %s; want a start-up error naming storage_key_file", code, stderr)
	}

	// tlsedge check says so too, and passes with the right file.
	code, stdout, _ := run(t, "check", "--config", c.conf, "--storage-key-file", wrongKey, "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(stdout, "FAIL storage ticket keys") {
		t.Errorf("check with another storage_key_file: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = run(t, "check", "--config", c.conf, "--data-dir", t.TempDir())
	if code != 0 || !strings.Contains(stdout, "ok   storage ticket keys") {
		t.Errorf("check with the nodes' storage_key_file: exit %d\n%s\n%s", code, stdout, stderr)
	}

	for _, n := range c.nodes {
		s := c.status(n)
		if s.Storage != "postgres" || !s.StorageUp || !s.TicketKeysShared || s.TicketKeysRotated.IsZero() || s.Node == "" {
			t.Errorf("node %s status: %+v; want postgres storage up, shared ticket keys with a rotation time, a node id", n.main, s)
		}
	}
}

// TestTicketsRotation: after the shared ring rotates, a ticket issued
// before still resumes on every node for its grace period (one more
// rotation period), and no longer once the next rotation drops its key.
func TestTicketsRotation(t *testing.T) {
	c := startCluster(t, 3, "4s")
	before := make([]time.Time, len(c.nodes))
	for i, n := range c.nodes {
		before[i] = c.status(n).TicketKeysRotated
	}
	one := &oneTicket{}
	cfg := c.clientConfig(one)
	hello(t, c.nodes[0].main, cfg)
	sess := filepath.Join(t.TempDir(), "s.pem")
	c.sClient(c.nodes[0].main, "", sess)
	if !hello(t, c.nodes[1].main, cfg) {
		t.Fatal("the ticket did not resume on node B before any rotation")
	}

	first := c.waitRotation(before, 15*time.Second)
	for _, n := range c.nodes {
		if !hello(t, n.main, cfg) {
			t.Errorf("after one rotation, a ticket from before it did not resume on %s (its key is in its grace period)", n.main)
		}
	}
	if !c.sClient(c.nodes[2].main, sess, "") {
		t.Error("openssl: after one rotation, a session from before it was not reused on node C")
	}

	c.waitRotation(first, 15*time.Second)
	for _, n := range c.nodes {
		if hello(t, n.main, cfg) {
			t.Errorf("after two rotations, a ticket from before the first still resumed on %s", n.main)
		}
	}
	if c.sClient(c.nodes[1].main, sess, "") {
		t.Error("openssl: after two rotations, a session from before the first was still reused on node B")
	}
	// Tickets issued now resume across nodes again.
	fresh := tls.NewLRUClientSessionCache(8)
	hello(t, c.nodes[2].main, c.clientConfig(fresh))
	if !hello(t, c.nodes[0].main, c.clientConfig(fresh)) {
		t.Error("a ticket issued after the rotations did not resume on node A")
	}
}

// metric reads one series' value from node n's Prometheus text.
func (c *cluster) metric(n *node, series string) string {
	c.t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(c.getStatus(n, "/status/metrics"))
	if m == nil {
		return ""
	}
	return m[1]
}

// countLogs counts node n's log records with message msg.
func countLogs(n *node, msg string) int {
	k := 0
	for _, l := range n.p.logs() {
		if l["msg"] == msg {
			k++
		}
	}
	return k
}

const (
	msgStorageDown = "storage: PostgreSQL unreachable; serving from memory (certificates, session-ticket keys) until it returns"
	msgStorageBack = "storage: PostgreSQL reachable again"
)

// TestStorageOutage: PostgreSQL stopped for 30 s (pg_ctl stop, then started
// again). Meanwhile every node keeps serving: full handshakes with the
// certificates it has, resumption across nodes with the ticket keys it
// has. Each node logs the outage once (not once per attempt), counts it in
// tlsedge_storage_outages_total, and recovers by itself when the database
// returns; the ring in the database is what it was, and tickets from before
// the outage still resume. The status shows each node's id and the locks
// held, with their holder.
func TestStorageOutage(t *testing.T) {
	c := startCluster(t, 3, "1h")
	ctx := context.Background()
	watcher, err := storage.ConnectPostgres(ctx, c.dsn, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ringBefore, err := watcher.Load(ctx, "tlsedge/ticket_keys/main")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := watcher.TryLock(ctx, "test_lock"); !ok || err != nil {
		t.Fatalf("taking a lock: %v %v", ok, err)
	}
	nodeIDs := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range c.nodes {
		for {
			s := c.status(n)
			held := false
			for _, l := range s.Locks {
				held = held || l.Name == "test_lock" && l.Owner == watcher.Owner()
			}
			if held {
				nodeIDs[s.Node] = true
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s status does not show test_lock held by %s: %+v", n.main, watcher.Owner(), s.Locks)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if v := c.metric(n, `tlsedge_storage_lock_expiry_timestamp_seconds{name="test_lock",owner="`+watcher.Owner()+`"}`); v == "" {
			t.Errorf("node %s metrics do not show test_lock and its holder", n.main)
		}
	}
	if len(nodeIDs) != len(c.nodes) {
		t.Errorf("node ids %v; want %d distinct", nodeIDs, len(c.nodes))
	}
	watcher.Unlock(ctx, "test_lock")
	watcher.Close()

	before := &oneTicket{}
	hello(t, c.nodes[0].main, c.clientConfig(before))

	if err := c.pg.Halt(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Every node notices (its check runs every second).
	for _, n := range c.nodes {
		for c.metric(n, "tlsedge_storage_up") != "0" {
			if time.Since(stopped) > 10*time.Second {
				t.Fatalf("node %s still reports the storage up 10s after it stopped", n.main)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("every node reported the storage down %v after pg_ctl stop", time.Since(stopped).Round(time.Millisecond))
	// Served from memory for the whole outage.
	handshakes := 0
	for time.Since(stopped) < 30*time.Second {
		handshakes += 4 * len(c.nodes)
		for i, n := range c.nodes {
			if hello(t, n.main, c.clientConfig(nil)) {
				t.Fatal("a handshake without a ticket resumed")
			}
			if !hello(t, n.main, c.clientConfig(before)) {
				t.Errorf("during the outage, a ticket from before it did not resume on node %d", i)
			}
			during := tls.NewLRUClientSessionCache(4)
			hello(t, n.main, c.clientConfig(during))
			if !hello(t, c.nodes[(i+1)%len(c.nodes)].main, c.clientConfig(during)) {
				t.Errorf("during the outage, a ticket from node %d did not resume on the next node", i)
			}
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d handshakes (full and resumed) during the %v outage, none failed", handshakes, time.Since(stopped).Round(time.Second))
	if err := c.pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	for _, n := range c.nodes {
		for c.metric(n, "tlsedge_storage_up") != "1" {
			if time.Since(restarted) > 15*time.Second {
				t.Fatalf("node %s did not see the storage back within 15s", n.main)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("node %s saw the storage back %v after it was ready", n.main, time.Since(restarted).Round(time.Millisecond))
		if got := c.metric(n, "tlsedge_storage_outages_total"); got != "1" {
			t.Errorf("node %s: tlsedge_storage_outages_total %q; want 1", n.main, got)
		}
		if d, b := countLogs(n, msgStorageDown), countLogs(n, msgStorageBack); d != 1 || b != 1 {
			t.Errorf("node %s logged the outage %d times and the recovery %d times; want once each", n.main, d, b)
		}
		if k := countLogs(n, "session-ticket keys: the shared key ring cannot be read; resuming with the keys in memory"); k > 2 {
			t.Errorf("node %s logged the ring failure %d times; want at most once per server", n.main, k)
		}
		if !hello(t, n.main, c.clientConfig(before)) {
			t.Errorf("after the outage, a ticket from before it did not resume on %s", n.main)
		}
	}
	check, err := storage.ConnectPostgres(ctx, c.dsn, storage.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	ringAfter, err := check.Load(ctx, "tlsedge/ticket_keys/main")
	if err != nil || string(ringAfter) != string(ringBefore) {
		t.Errorf("the ring in the database changed across the outage (%v)", err)
	}
}
