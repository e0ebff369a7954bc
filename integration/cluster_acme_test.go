package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tlsedge/internal/testenv"
)

// orderCounter is an HTTPS proxy in front of Pebble's ACME endpoint that
// counts new-order requests by the names they ask for (the JWS payload is
// readable; only its signature is secret). Pebble builds its directory's
// URLs from the Host header, which the proxy keeps, so every later request
// of the ACME client comes through the proxy too. It presents Pebble's own
// test certificate, so acme_ca_root stays Pebble's.
type orderCounter struct {
	Directory string
	mu        sync.Mutex
	orders    map[string]int // by names
	accounts  int
}

func countOrders(t testing.TB, pb *Pebble) *orderCounter {
	t.Helper()
	certs := filepath.Dir(pb.RootFile) // .../test/certs
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "localhost", "cert.pem"), filepath.Join(certs, "localhost", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(pb.RootFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	target, err := url.Parse(pb.Directory)
	if err != nil {
		t.Fatal(err)
	}
	target.Path = ""
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	oc := &orderCounter{orders: map[string]int{}}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && (r.URL.Path == "/order-plz" || r.URL.Path == "/sign-me-up") {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			oc.count(r.URL.Path, body)
		}
		rp.ServeHTTP(w, r)
	})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	oc.Directory = "https://" + ln.Addr().String() + "/dir"
	return oc
}

// count records one new-order (by its names) or new-account request.
func (oc *orderCounter) count(path string, body []byte) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if path == "/sign-me-up" {
		oc.accounts++
		return
	}
	var jws struct{ Payload string }
	var order struct{ Identifiers []struct{ Value string } }
	if json.Unmarshal(body, &jws) != nil {
		oc.orders["(unreadable)"]++
		return
	}
	payload, err := base64.RawURLEncoding.DecodeString(jws.Payload)
	if err != nil || json.Unmarshal(payload, &order) != nil || len(order.Identifiers) == 0 {
		oc.orders["(unreadable)"]++
		return
	}
	var names []string
	for _, id := range order.Identifiers {
		names = append(names, id.Value)
	}
	oc.orders[strings.Join(names, ",")]++
}

// Orders returns the new-order requests seen, by names.
func (oc *orderCounter) Orders() map[string]int {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return maps.Clone(oc.orders)
}

// Accounts is how many new-account requests were seen.
func (oc *orderCounter) Accounts() int {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return oc.accounts
}

// clusterNode is one tlsedge process of the cluster.
type clusterNode struct {
	*proc
	port     int // TLS, behind the balancer on Pebble's tls-alpn-01 port
	httpPort int // plain HTTP (http-01), behind the balancer on Pebble's HTTP port
}

// lockRow is one row of the shared lock table.
type lockRow struct {
	Name, Owner  string
	Expires, Now time.Time // Now is the database's clock at the query
}

// pid is the process id in the owner ("host/pid/random").
func (l lockRow) pid() int {
	parts := strings.Split(l.Owner, "/")
	if len(parts) != 3 {
		return 0
	}
	n, _ := strconv.Atoi(parts[1])
	return n
}

// issueLocks reads certmagic's certificate issue locks from the table.
func issueLocks(t testing.TB, conn *pgx.Conn) []lockRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, `SELECT name, owner, expires, now() FROM tlsedge_locks WHERE name LIKE 'issue\_cert\_%' ORDER BY name`)
	if err != nil {
		t.Fatalf("reading tlsedge_locks: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (lockRow, error) {
		var l lockRow
		err := r.Scan(&l.Name, &l.Owner, &l.Expires, &l.Now)
		return l, err
	})
	if err != nil {
		t.Fatalf("reading tlsedge_locks: %v", err)
	}
	return out
}

// fingerprint is the SHA-256 of a leaf, as hex.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:8])
}

// servedBy fetches name's certificate from each node directly (not through
// the balancer), verified against roots, and returns the fingerprints.
func servedBy(t testing.TB, nodes []*clusterNode, name string, roots *x509.CertPool) ([]string, error) {
	t.Helper()
	var out []string
	for i, n := range nodes {
		leaf, code, err := acmeGet(n.port, name, roots)
		if err != nil || code != 200 {
			return nil, fmt.Errorf("node %d, %s: %d %v", i+1, name, code, err)
		}
		out = append(out, fingerprint(leaf))
	}
	return out, nil
}

// renewedBy counts the renewals the nodes logged, by name.
func renewedBy(nodes []*clusterNode) map[string]int {
	out := map[string]int{}
	for _, n := range nodes {
		for _, l := range n.logs() {
			if l["msg"] == "acme: certificate renewed" {
				out[fmt.Sprint(l["server_name"])]++
			}
		}
	}
	return out
}

// validations logs the ACME validations each node answered (from its log
// record skip[i] on) and counts them, and those answered from the shared
// storage for an order another node placed.
func validations(t testing.TB, nodes []*clusterNode, skip map[int]int) (served, distributed int) {
	t.Helper()
	for i, n := range nodes {
		logs := n.logs()
		for _, l := range logs[min(skip[i], len(logs)):] {
			if msg, _ := l["msg"].(string); strings.HasPrefix(msg, "served key authentication") {
				served++
				if l["distributed"] == true {
					distributed++
				}
				name := l["identifier"] // http-01; tls-alpn-01 logs the SNI
				if name == nil {
					name = l["server_name"]
				}
				t.Logf("node %d answered a %v validation for %v (from the shared storage: %v)", i+1, l["challenge"], name, l["distributed"])
			}
		}
	}
	return served, distributed
}

// eventuallyEqual waits up to 30 s until every node serves the same
// certificate for name, other than not (a fingerprint, or "").
func eventuallyEqual(t testing.TB, nodes []*clusterNode, name string, roots *x509.CertPool, not string) ([]string, error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		fps, err := servedBy(t, nodes, name, roots)
		if err != nil {
			return nil, err
		}
		if allEqual(fps) && fps[0] != not {
			return fps, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: the nodes serve %v (not wanted: %q): want one certificate", name, fps, not)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func allEqual(s []string) bool {
	for _, v := range s {
		if v != s[0] {
			return false
		}
	}
	return true
}

// TestClusterACME runs three tlsedge processes sharing one PostgreSQL and
// one ACME account behind a TCP balancer, the deployment the README
// describes. Pebble validates through balancers that pick a node at random
// for every connection, so a validation often reaches a node that did not
// place the order and answers from the shared storage.
//
// Start-up: the three nodes start at once for the same two names; Pebble
// sees one account and exactly one order per name (and one per renewal, if
// one already ran), every validation succeeds, and the three nodes serve
// the same certificate for each name.
//
// Crash: the node holding a name's renewal lock (found in tlsedge_locks) is
// killed with SIGKILL mid-renewal. The lock stays held until its lease
// runs out; then another node takes it and renews, and the survivors serve
// the renewed certificate. A client loop through the balancer runs across
// the whole event and not one request fails: the old certificate is still
// valid while the lease runs out.
func TestClusterACME(t *testing.T) {
	pg := testenv.Postgres(t)
	adminDSN := pg.CreateDB(t, "cluster")
	// The nodes get the password the way the README tells operators to
	// give it: PGPASSWORD, not in the URL.
	t.Setenv("PGPASSWORD", testenv.PostgresPassword)
	nodeDSN := pg.URL("cluster", "")

	names := []string{"a.cluster.example.com", "b.cluster.example.com"}
	nodes := make([]*clusterNode, 3)
	var tlsBackends, httpBackends []string
	for i := range nodes {
		nodes[i] = &clusterNode{port: freePort(t), httpPort: freePort(t)}
		tlsBackends = append(tlsBackends, HostPort(nodes[i].port))
		httpBackends = append(httpBackends, HostPort(nodes[i].httpPort))
	}
	tlsLB := StartBalancer(t, 0, tlsBackends...)
	httpLB := StartBalancer(t, 0, httpBackends...)

	// 75 s certificates with an 80% renewal window come due 15 s after
	// issue at the latest (pebble's renewal information may say earlier)
	// and leave 60 s: twice the 30 s lock lease a crashed holder blocks
	// renewal for.
	pb := StartPebble(t, PebbleConfig{HTTPPort: httpLB.Port, TLSPort: tlsLB.Port, Validity: 75 * time.Second})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	oc := countOrders(t, pb)

	// Every node is given the same key file: it seals the shared
	// session-ticket keys, so a client resumes on whichever node it reaches.
	keyFile := filepath.Join(t.TempDir(), "storage.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("a7", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i, n := range nodes {
		n.proc = launch(t, binary, nil,
			"--socket-host", "127.0.0.1", "--socket-port", strconv.Itoa(n.port),
			"--storage", nodeDSN, "--storage-key-file", keyFile,
			"--ssl-module", "acme",
			"--acme-domains", strings.Join(names, ","),
			"--acme-email", "admin@example.com",
			"--acme-ca", oc.Directory,
			"--acme-ca-root", pb.RootFile,
			"--acme-challenges", "http-01,tls-alpn-01",
			"--acme-http-port", strconv.Itoa(n.httpPort),
			"--acme-renew-window", "80%", "--acme-renew-interval", "1s",
			"--mount", "/=text:node"+strconv.Itoa(i+1),
			"--log-level", "debug")
	}
	for _, n := range nodes {
		n.waitServing()
	}
	t.Logf("three nodes serving %s after start", time.Since(start).Round(time.Millisecond))
	roots := pb.Roots(t)

	// One account, one order per name, no failed validation. Pebble's
	// renewal information for so short a lifetime is "any time now", so
	// a renewal may already have run; each is one more order (tlsedge
	// sends no ARI "replaces" to a CA it has no staging CA for, so
	// pebble's orders do not tell renewals apart). Counted while no
	// renewal runs.
	var orders, renewed map[string]int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("issue locks held for 30s")
		}
		if len(issueLocks(t, conn)) > 0 {
			continue
		}
		orders, renewed = oc.Orders(), renewedBy(nodes)
		if len(issueLocks(t, conn)) == 0 {
			break
		}
	}
	for _, name := range names {
		if orders[name] != 1+renewed[name] {
			t.Errorf("pebble saw %d orders for %s, want 1 and one per renewal (%d)", orders[name], name, renewed[name])
		}
	}
	if len(orders) != len(names) || oc.Accounts() != 1 {
		t.Errorf("orders %v, %d new-account requests; want orders for %v only and one account", orders, oc.Accounts(), names)
	}
	if strings.Contains(pb.Log(), "set INVALID") {
		t.Error("a validation failed at start-up")
	}
	// Which node answers is up to the balancer (and which nodes listen
	// yet): that one answered from the shared storage is checked at the
	// end, over the renewals' validations too.
	served, distributed := validations(t, nodes, map[int]int{})
	seen := map[int]int{} // node index: log records read so far
	for i, n := range nodes {
		seen[i] = len(n.logs())
	}
	// A renewal may be running: a node that did not renew picks the new
	// certificate up at its next check (every second here).
	first := map[string]string{}
	for _, name := range names {
		fps, err := eventuallyEqual(t, nodes, name, roots, "")
		if err != nil {
			t.Fatal(err)
		}
		first[name] = fps[0]
	}
	if t.Failed() {
		return
	}

	// Crash. A client loop through the balancer runs across the event;
	// the kill happens between two of its requests (in-flight
	// connections die with any node, balancer or not).
	var (
		clientMu sync.Mutex // held by a request, and by the kill
		stop     = make(chan struct{})
		loopDone = make(chan struct{})
		requests int
		failures []string
	)
	go func() {
		defer close(loopDone)
		deadline := time.Now().Add(100 * time.Second)
		for requests < 5000 && time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			clientMu.Lock()
			name := names[requests%len(names)]
			_, code, err := acmeGet(tlsLB.Port, name, roots)
			requests++
			if err != nil || code != 200 {
				failures = append(failures, fmt.Sprintf("request %d for %s: %d %v", requests, name, code, err))
			}
			clientMu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	stopLoop := sync.OnceFunc(func() {
		close(stop)
		<-loopDone
	})
	defer stopLoop()

	// A renewal holds its lock for a second or more (pebble asks the
	// client to wait a second before the certificate). A node that takes
	// the lock only to find the renewal done already holds it for
	// milliseconds: a lock held for 300 ms is a renewal in progress.
	var held lockRow
	var victim int
	since := map[lockRow]time.Time{} // by name and owner: first seen
	deadline := time.Now().Add(40 * time.Second)
	for victim == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no node held a renewal lock for 300ms within 40s")
		}
		for _, l := range issueLocks(t, conn) {
			key := lockRow{Name: l.Name, Owner: l.Owner}
			if _, ok := since[key]; !ok {
				since[key] = time.Now()
			}
			if time.Since(since[key]) < 300*time.Millisecond {
				continue
			}
			for i, n := range nodes {
				if l.pid() == n.cmd.Process.Pid {
					held, victim = l, i+1
				}
			}
		}
		if victim == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	clientMu.Lock()
	nodes[victim-1].cmd.Process.Signal(syscall.SIGKILL)
	<-nodes[victim-1].done
	clientMu.Unlock()
	killed := time.Now()
	// The row is still the victim's: the renewal was cut short, not done.
	var stillHeld *lockRow
	for _, l := range issueLocks(t, conn) {
		if l.Name == held.Name && l.Owner == held.Owner {
			stillHeld = &l
		}
	}
	if stillHeld == nil {
		t.Fatalf("node %d released %s before it was killed: the renewal finished too fast to crash it", victim, held.Name)
	}
	t.Logf("killed node %d holding %s; lease until %s (%s from now)", victim, held.Name,
		stillHeld.Expires.Format(time.TimeOnly), stillHeld.Expires.Sub(stillHeld.Now).Round(time.Millisecond))
	var survivors []*clusterNode
	for i, n := range nodes {
		if i+1 != victim {
			survivors = append(survivors, n)
		}
	}

	// Another node takes the lock, but only once the lease ran out.
	deadline = time.Now().Add(stillHeld.Expires.Sub(stillHeld.Now) + 20*time.Second)
	var takeover *lockRow
	for takeover == nil {
		if time.Now().After(deadline) {
			t.Fatalf("nobody took %s within 20s of its lease's end", held.Name)
		}
		for _, l := range issueLocks(t, conn) {
			if l.Name == held.Name && l.Owner != held.Owner {
				takeover = &l
			}
		}
		if takeover == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if takeover.Now.Before(stillHeld.Expires) {
		t.Errorf("%s taken at %s, before the crashed holder's lease ended at %s", held.Name, takeover.Now, stillHeld.Expires)
	}
	t.Logf("%s taken over by pid %d %s after the kill", held.Name, takeover.pid(), time.Since(killed).Round(time.Millisecond))

	// The survivors serve renewed certificates for every name, the same.
	for _, name := range names {
		if _, err := eventuallyEqual(t, survivors, name, roots, first[name]); err != nil {
			t.Fatal(err)
		}
	}
	if renewedBy(survivors)[strings.TrimPrefix(held.Name, "issue_cert_")] == 0 {
		t.Errorf("no survivor logged the renewal of %s", held.Name)
	}
	t.Logf("renewed everywhere %s after the kill", time.Since(killed).Round(time.Millisecond))
	served2, distributed2 := validations(t, nodes, seen)
	if distributed+distributed2 == 0 {
		t.Errorf("no node answered a validation for an order another node placed (%d answered; balancers: http %v, tls %v)",
			served+served2, httpLB.Counts(), tlsLB.Counts())
	}

	stopLoop()
	t.Logf("%d requests through the balancer across the crash, %d failed; balancer: %v, %d refused",
		requests, len(failures), tlsLB.Counts(), tlsLB.Refused())
	t.Logf("orders %v; renewals logged %v", oc.Orders(), renewedBy(nodes))
	if n := httpLB.Refused() + tlsLB.Refused(); n != 0 {
		t.Errorf("%d connections found no node to take them", n)
	}
	for _, f := range failures {
		t.Error(f)
	}
	if requests < 100 {
		t.Errorf("only %d requests during the event", requests)
	}
}
