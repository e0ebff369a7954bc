package apps

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tlsedge/apps/appopt"
)

// A pool is a mount target naming several upstreams, separated by spaces,
// each with an optional weight:
//
//	http://10.0.0.1:8080;weight=3 http://10.0.0.2:8080 unix:/run/app.sock
//
// Each upstream is a proxy of its own, on its own connection engine, with
// its own passive health (proxy_max_fails, proxy_fail_timeout) and, with
// proxy_health_uri, active checks. The pool picks one per request by
// proxy_lb among those up; when an upstream fails before it answered, the
// request goes on to another (see poolTry); when none is up the answer is a
// fast 503 with Retry-After, counted.
//
// A reload builds a new pool beside the old one, which takes over the
// health of the upstreams the two share (through Env.Metrics): requests in
// flight finish on the old one's upstreams (a removed upstream drains),
// and the server closes it once they are done.
type pool struct {
	target  string
	members []*member
	lb      appopt.LB
	lbName  string // the field or cookie name of header: and cookie:
	key     []byte // signs sticky cookies
	buffer  *requestBuffer
	log     *slog.Logger
	limit   *logLimiter

	rrMu sync.Mutex // smooth weighted round robin state: member.cur

	metrics *poolRegistry // where the metrics find it; nil for none
	serial  int64         // its order in metrics: the newest pool is shown
	health  *healthCheck  // nil: passive checks only
	stop    chan struct{}
	done    sync.WaitGroup
	closed  atomic.Bool

	unavailable atomic.Uint64 // requests answered 503: no upstream up
	retried     atomic.Uint64 // requests handed on to another upstream
}

// member is one upstream of a pool.
type member struct {
	idx    int
	name   string // the upstream as written, without its weight
	id     string // stable across reloads and nodes: names it in cookies
	seed   uint64 // for rendezvous hashing
	weight int
	p      *proxy

	inflight atomic.Int64
	cur      int // smooth round robin's current weight, under pool.rrMu

	// Active health: the checker's goroutine alone writes these.
	activeDown atomic.Bool
	okRun      int
	failRun    int
	lastErr    atomic.Pointer[string]
}

// maxPoolMembers bounds a pool: the members tried for one request fit in
// a bit mask.
const maxPoolMembers = 64

// maxWeight bounds a member's weight.
const maxWeight = 1000

// isPoolTarget reports whether target names a pool: several upstreams, or
// one with a weight. Other targets may hold spaces (text:hello world).
func isPoolTarget(target string) bool {
	t := strings.TrimSpace(target)
	if !strings.HasPrefix(t, "http://") && !strings.HasPrefix(t, "https://") && !strings.HasPrefix(t, "unix:") {
		return false
	}
	return strings.ContainsAny(t, " \t") || strings.Contains(t, ";weight=")
}

// splitMember cuts ";weight=N" off an upstream.
func splitMember(s string) (name string, weight int, err error) {
	name, w, ok := strings.Cut(s, ";weight=")
	if !ok {
		return s, 1, nil
	}
	n, err := strconv.Atoi(w)
	if err != nil || n < 1 || n > maxWeight || w[0] == '+' {
		return "", 0, fmt.Errorf("weight %q: want a whole number from 1 to %d", w, maxWeight)
	}
	return name, n, nil
}

// newPool builds the pool target names, each upstream with New.
func newPool(target string, env Env) (*pool, error) {
	bad := func(why string, args ...any) error {
		return fmt.Errorf("%w %q: %s (want upstreams separated by spaces, each http://HOST:PORT[/base], https://HOST:PORT[/base] or unix:/path.sock[:/base], with an optional ;weight=N)", ErrBadTarget, target, fmt.Sprintf(why, args...))
	}
	fields := strings.Fields(target)
	if len(fields) > maxPoolMembers {
		return nil, bad("%d upstreams; at most %d", len(fields), maxPoolMembers)
	}
	o := &env.Options
	lb, lbName, err := appopt.ParseLB(o.ProxyLB)
	if err != nil {
		return nil, err // Validate has said so, naming the option
	}
	pl := &pool{
		target: target,
		lb:     lb,
		lbName: lbName,
		log:    env.logger().With("pool", target),
		limit:  newLogLimiter(5, 20),
		stop:   make(chan struct{}),
	}
	fail := func(err error) (*pool, error) {
		pl.Close()
		return nil, err
	}
	seen := map[string]bool{}
	for i, f := range fields {
		name, weight, err := splitMember(f)
		if err != nil {
			return fail(bad("%s: %v", f, err))
		}
		if seen[name] {
			return fail(bad("%s is named twice (give it a weight instead)", name))
		}
		seen[name] = true
		scheme, _, _ := strings.Cut(name, ":")
		if scheme != "http" && scheme != "https" && scheme != "unix" {
			return fail(bad("%s: a pool's upstreams are http://, https:// or unix: targets", name))
		}
		// Each member buffers nothing itself: the pool reads a body once,
		// for whichever members it goes to.
		menv := env
		menv.Options.ProxyRequestBuffering = false
		h, err := New(name, menv)
		if err != nil {
			return fail(err)
		}
		p := h.(*proxy)
		pl.members = append(pl.members, &member{idx: i, name: name, id: memberID(name), seed: hash64(name), weight: weight, p: p})
	}
	if o.ProxyRequestBuffering {
		dir := o.TempPath()
		if err := checkTempDir(dir); err != nil {
			return fail(fmt.Errorf("%w: proxy_temp_path: cannot make a directory for buffered request bodies under %s: %w (set proxy_temp_path to a directory the server's user may write)", ErrBadOption, dir, err))
		}
		pl.buffer = &requestBuffer{memLimit: o.BufferSize(), dir: dir}
	}
	if lb == appopt.Cookie {
		if pl.key, err = cookieKey(o, env.CookieKey); err != nil {
			return fail(err)
		}
	}
	if env.Metrics != nil {
		pl.metrics = &env.Metrics.pools
		for _, m := range pl.members {
			if old := pl.metrics.member(m.name); old != nil {
				m.inherit(old, o.ProxyHealthURI != "")
			}
		}
		pl.metrics.add(pl)
	}
	if o.ProxyHealthURI != "" {
		hc, err := newHealthCheck(o)
		if err != nil {
			return fail(err)
		}
		pl.health = hc
		pl.done.Add(1)
		go pl.runHealth()
	}
	return pl, nil
}

// cookieKey is the key that signs sticky cookies: proxy_lb_cookie_key_file,
// else the one the process made (Env.CookieKey), else a random one.
func cookieKey(o *Options, fromEnv []byte) ([]byte, error) {
	if f := o.ProxyLBCookieKeyFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%w: proxy_lb_cookie_key_file: %w", ErrBadOption, err)
		}
		if len(strings.TrimSpace(string(b))) < 16 {
			return nil, fmt.Errorf("%w: proxy_lb_cookie_key_file: %s holds fewer than 16 bytes; put a long random secret there (head -c 32 /dev/urandom | base64)", ErrBadOption, f)
		}
		return b, nil
	}
	if len(fromEnv) > 0 {
		return fromEnv, nil
	}
	k := make([]byte, 32)
	rand.Read(k)
	return k, nil
}

// Close stops the health checks and drops the idle upstream connections;
// requests in flight finish.
func (pl *pool) Close() error {
	if pl.closed.CompareAndSwap(false, true) {
		close(pl.stop)
	}
	pl.done.Wait()
	if pl.metrics != nil {
		pl.metrics.remove(pl)
	}
	for _, m := range pl.members {
		m.p.Close()
	}
	return nil
}

// poolTry is what a pool hands a member for one request: the member gives
// back (handoff) the failures another member may answer instead, rather
// than answering them.
type poolTry struct {
	replay    bool  // the request may be sent again: idempotent, its body replayable
	handedOff bool  // the member answered nothing
	unsent    bool  // nothing of the request reached the upstream
	err       error // why
}

// handoff reports whether the pool takes err instead of the member
// answering it. unsent failures (the upstream marked down, the connection
// not made) never reached the upstream, so any request may go elsewhere;
// one that failed after it was sent, before a byte came back, only when
// the engine would retry it too: an idempotent request whose body can be
// sent again, failed by a refused, reset or closed connection (never a
// timeout: the client has waited once). A nil t takes nothing.
func (t *poolTry) handoff(r *http.Request, err error, unsent bool) bool {
	if t == nil || r.Context().Err() != nil {
		return false
	}
	if !unsent && !(t.replay && retryableErr(err)) {
		return false
	}
	t.handedOff, t.unsent, t.err = true, unsent, err
	return true
}

// up reports whether m may be sent requests: neither passive nor active
// checks have it down.
func (m *member) up(now time.Time) bool {
	if m.activeDown.Load() {
		return false
	}
	down, _ := m.p.up.down(now)
	return !down
}

func (pl *pool) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if _, tunnel := extendedConnect(r); pl.buffer != nil && hasBody && !tunnel {
		sb, err := pl.buffer.read(r)
		if err != nil {
			pl.members[0].p.failBuffering(w, r, err)
			return
		}
		defer sb.Close()
		r = buffered(r, sb)
		hasBody = r.ContentLength != 0
	}
	spooled := false
	if hasBody {
		_, spooled = r.Body.(spoolReader)
	}
	try := poolTry{replay: idempotent(r.Method) && (!hasBody || spooled && r.GetBody != nil)}
	var tried uint64
	var last *member
	now := time.Now()
	sticky := pl.stickyMember(r)
	for n := 0; n < len(pl.members); n++ {
		m := sticky
		if m == nil || !m.up(now) || tried&(1<<m.idx) != 0 {
			m = pl.pick(r, tried, now)
		}
		if m == nil {
			break
		}
		tried |= 1 << m.idx
		req := r
		if n > 0 && hasBody {
			var ok bool
			if req, ok = again(r, spooled, try.unsent); !ok {
				break
			}
		}
		if pl.lb == appopt.Cookie && m != sticky {
			pl.setCookie(w, r, m)
		}
		if n > 0 {
			pl.retried.Add(1)
			pl.log.Debug("pool: handing the request to another upstream", "method", r.Method, "path", r.URL.Path, "failed", last.name, "err", try.err, "next", m.name)
		}
		last = m
		try.handedOff, try.unsent, try.err = false, false, nil
		m.serve(w, req, &try)
		if !try.handedOff {
			return
		}
		now = time.Now()
	}
	if last != nil {
		// Every member up was tried, or the body cannot go again: the
		// last failure is the answer (502, or 504 for a timeout).
		last.p.fail(w, r, try.err, nil)
		return
	}
	pl.unavailableAnswer(w, r, now)
}

// inherit takes the health of the same upstream in the pool a reload
// replaces, so that one known to be down stays out of rotation rather than
// being tried again by the first requests after the reload; the new pool's
// own checks take over from there (a pool without active checks takes
// only the passive state).
func (m *member) inherit(old *member, checked bool) {
	if checked && old.activeDown.Load() {
		m.activeDown.Store(true)
	}
	ou, nu := old.p.up, m.p.up
	ou.hmu.Lock()
	until, fails, first, last := ou.downUntil, ou.fails, ou.firstFail, ou.lastFail
	ou.hmu.Unlock()
	nu.hmu.Lock()
	nu.downUntil, nu.fails, nu.firstFail, nu.lastFail = until, fails, first, last
	if !until.IsZero() {
		nu.downNs.Store(until.UnixNano())
	}
	nu.failing.Store(fails > 0 || !until.IsZero())
	nu.hmu.Unlock()
}

// serve passes r to m's proxy, counting it in flight meanwhile, also
// when the proxy ends by panicking (a response cut off mid-body).
func (m *member) serve(w http.ResponseWriter, r *http.Request, try *poolTry) {
	m.inflight.Add(1)
	defer m.inflight.Add(-1)
	m.p.serve(w, r, try)
}

// again is r to send to another member after one handed it back: a
// spooled body is read again from its start; a streamed one can go on only
// if the member before never began to send it (it failed to connect: the
// engine retries a streamed body on no path), so that it is untouched.
func again(r *http.Request, spooled, unsent bool) (*http.Request, bool) {
	if spooled && r.GetBody != nil {
		b, err := r.GetBody()
		if err != nil {
			return nil, false
		}
		r2 := *r
		r2.Body = b
		return &r2, true
	}
	return r, !spooled && unsent
}

// unavailableAnswer is the fast 503 of a pool with no upstream up, with a
// Retry-After of when the first of them may be back.
func (pl *pool) unavailableAnswer(w http.ResponseWriter, r *http.Request, now time.Time) {
	pl.unavailable.Add(1)
	wait := time.Duration(math.MaxInt64)
	for _, m := range pl.members {
		d := time.Duration(0)
		m.p.up.hmu.Lock()
		if until := m.p.up.downUntil; until.After(now) {
			d = until.Sub(now)
		}
		m.p.up.hmu.Unlock()
		if m.activeDown.Load() && pl.health != nil {
			d = max(d, pl.health.interval*time.Duration(pl.health.rise))
		}
		wait = min(wait, d)
	}
	secs := int64(math.Ceil(wait.Seconds()))
	secs = min(max(secs, 1), 3600)
	if ok, dropped := pl.limit.allow(now); ok {
		attrs := []any{"status", http.StatusServiceUnavailable, "method", r.Method, "path", r.URL.Path, "retry_after", secs}
		if dropped > 0 {
			attrs = append(attrs, "suppressed", dropped)
		}
		pl.log.Warn("pool: no upstream is up", attrs...)
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Retry-After", strconv.FormatInt(secs, 10))
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, withRequestID(r, "Service Unavailable: no upstream server is up", http.StatusServiceUnavailable)+"\n")
}

// PoolUpstream is the state of one upstream of a pool, for the status page
// and tests.
type PoolUpstream struct {
	Name   string `json:"name"`
	Weight int    `json:"weight"`
	Up     bool   `json:"up"`
	// HealthDown: out of rotation by the active checks (Up is false
	// then, and also while the passive checks have it down).
	HealthDown bool   `json:"health_down"`
	Inflight   int64  `json:"inflight"`
	LastErr    string `json:"last_check_error,omitempty"`
}

// PoolState is a pool's state: its upstreams and counters.
type PoolState struct {
	Target      string         `json:"target"`
	Upstreams   []PoolUpstream `json:"upstreams"`
	Unavailable uint64         `json:"unavailable"` // requests answered 503: none up
	Retried     uint64         `json:"retried"`     // requests handed to another upstream
}

// PoolStateOf reports the state of h when it is a pool.
func PoolStateOf(h http.Handler) (PoolState, bool) {
	pl, ok := h.(*pool)
	if !ok {
		return PoolState{}, false
	}
	return pl.state(time.Now()), true
}

func (pl *pool) state(now time.Time) PoolState {
	st := PoolState{Target: pl.target, Unavailable: pl.unavailable.Load(), Retried: pl.retried.Load()}
	for _, m := range pl.members {
		u := PoolUpstream{Name: m.name, Weight: m.weight, Up: m.up(now), HealthDown: m.activeDown.Load(), Inflight: m.inflight.Load()}
		if e := m.lastErr.Load(); e != nil {
			u.LastErr = *e
		}
		st.Upstreams = append(st.Upstreams, u)
	}
	return st
}
