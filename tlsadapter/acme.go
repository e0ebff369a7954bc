package tlsadapter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"

	"tlsedge/certs"
	"tlsedge/internal/boundedread"
)

// ErrACMENoCertificate is wrapped by handshakes refused for want of a
// certificate: a name that is neither managed nor allowed on demand.
var ErrACMENoCertificate = errors.New("tlsadapter: acme: no certificate for this name")

// acmeAdapter serves TLS with certificates certmagic obtains and renews.
//
// It holds two certmagic Configs over one Cache: main manages acme_domains
// (obtained at start-up, never on demand), onDemand (nil unless acme_on_demand)
// handles every other name at handshake time behind the allow rules. One
// Config cannot do both: certmagic defers every name to the first handshake
// as soon as Config.OnDemand is set.
type acmeAdapter struct {
	opts    ACMEOptions
	log     *slog.Logger
	port    int
	storage string // where certmagic's storage is, for logs (a URL's password masked)
	domains map[string]bool

	cache    *certmagic.Cache
	main     *certmagic.Config
	issuer   *certmagic.ACMEIssuer
	onDemand *certmagic.Config // nil without acme_on_demand
	odPolicy *onDemandPolicy

	probe *tls.Config // tls-alpn-01 validation probes only; nil without tls-alpn-01

	httpLn  net.Listener
	httpSrv *http.Server

	deferred  bool // start-up obtain waits for Start
	startOnce sync.Once
	startErr  error

	stats        acmeCounters
	fallbackSeen sync.Map // name -> struct{}: fallback served at least once
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	closeOnce    sync.Once
}

// acmeCounters are the event counts behind ACMEStats.
type acmeCounters struct {
	obtained, renewed, failed atomic.Int64
	storageFailed             atomic.Int64
	mu                        sync.Mutex
	names                     map[string]struct{} // on-demand names issued so far
}

// ACMEStatsReporter is implemented by the acme adapter; the server's
// statistics read it with a type assertion on the Adapter.
type ACMEStatsReporter interface {
	ACMEStats() ACMEStats
}

// ACMEStats are the acme module's counters since start and the state of each
// managed name.
type ACMEStats struct {
	Obtained int64 // certificates obtained for the first time
	Renewed  int64 // certificates renewed
	Failed   int64 // failed obtain or renew attempts (each retry counts)
	// StorageFailed counts checks that found the storage directory not
	// writable: renewed certificates could not be saved.
	StorageFailed int64
	Names         []ACMENameState
}

// ACMENameState is one managed name as ACMEStats and CheckACME see it.
type ACMENameState struct {
	Name     string
	State    string    // "valid", "renewal due", "expired", "pending" (no certificate yet) or "error"
	NotAfter time.Time // zero when pending
	DaysLeft float64   // negative once expired
	Serial   string    // hex; empty when pending
	Detail   string    // why, for "error"
}

// newACME builds the acme adapter: storage, certmagic, the http-01 listener,
// then the start-up obtain (synchronous unless acme_async).
func newACME(ctx context.Context, p Params) (Adapter, error) {
	o := p.Options.ACME.withDefaults()
	if err := o.ValidateInUse(); err != nil {
		return nil, fmt.Errorf("tlsadapter: acme options: %w", err)
	}
	store, err := acmeStorage(o, p)
	if err != nil {
		return nil, err
	}
	if fs, ok := store.(*certmagic.FileStorage); ok {
		if err := ensurePrivateDir(fs.Path); err != nil {
			return nil, err
		}
		if fi, err := os.Stat(fs.Path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			p.Logger.Warn("acme: storage directory is readable by others; account and certificate keys live below it",
				"path", fs.Path, "mode", fi.Mode().Perm().String())
		}
	}
	roots, err := loadCARoots(o.CARoot)
	if err != nil {
		return nil, err
	}
	odRules, err := compileAllow(o.OnDemandAllow)
	if err != nil {
		return nil, fmt.Errorf("tlsadapter: acme_on_demand_allow: %w", err)
	}

	if o.Async && o.Fallback == nil && p.DataDir != "" {
		o.Fallback = devCAFallback(p, o.Domains)
	}

	a := &acmeAdapter{
		opts:    o,
		log:     p.Logger.With("module", "acme"),
		port:    p.Port,
		storage: describeStorage(store),
		domains: map[string]bool{},
	}
	a.stats.names = map[string]struct{}{}
	for _, d := range o.Domains {
		a.domains[strings.ToLower(d)] = true
	}
	zl := newZapLogger(a.log)

	// GetConfigForCert runs in the cache's maintenance goroutine, which starts
	// inside NewCache, before main exists; the atomic makes that hand-over
	// race-free.
	var mainCfg atomic.Pointer[certmagic.Config]
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if c := mainCfg.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("acme adapter not ready")
		},
		RenewCheckInterval: o.RenewInterval,
		OCSPCheckInterval:  time.Hour,
		Logger:             zl,
	})
	newConfig := func(onDemand *certmagic.OnDemandConfig, onEvent func(context.Context, string, map[string]any) error, httpOnly bool) (*certmagic.Config, *certmagic.ACMEIssuer) {
		cfg := certmagic.New(a.cache, certmagic.Config{
			RenewalWindowRatio: float64(o.RenewWindow),
			OnEvent:            onEvent,
			OnDemand:           onDemand,
			KeySource:          certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
			Storage:            store,
			OCSP:               certmagic.OCSPConfig{DisableStapling: !o.OCSPStapling},
			Logger:             zl,
		})
		tmpl := a.issuerTemplate(p, roots)
		tmpl.DisableTLSALPNChallenge = tmpl.DisableTLSALPNChallenge || httpOnly
		iss := certmagic.NewACMEIssuer(cfg, tmpl)
		cfg.Issuers = []certmagic.Issuer{iss}
		return cfg, iss
	}
	a.main, a.issuer = newConfig(nil, a.onEvent, false)
	if len(o.Domains) > 0 {
		// Clients without SNI (by IP address) get the first domain's certificate.
		a.main.DefaultServerName = strings.ToLower(o.Domains[0])
	}
	mainCfg.Store(a.main)
	if o.OnDemand {
		a.odPolicy = newOnDemandPolicy(odRules, o.OnDemandAsk, o.OnDemandRate, a.log)
		a.onDemand, _ = newConfig(&certmagic.OnDemandConfig{DecisionFunc: a.odPolicy.decide}, a.onDemandEvent, false)
	}
	a.probe = a.probeConfig()

	if o.challenge(ChallengeHTTP01) {
		if err := a.listenHTTP(p.Host); err != nil {
			a.cache.Stop()
			return nil, err
		}
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	a.wg.Add(1)
	go a.watchStorage(runCtx, store, o.RenewInterval)
	alpnBusy := len(o.Domains) > 0 && !o.Async && a.alpnPortBusy(p)
	switch {
	case len(o.Domains) == 0:
		a.log.Info("acme: on-demand only; certificates are obtained at first handshake", "ca", o.directory())
	case o.Async:
		msg := "acme: starting before certificates are in place; the internal CA's certificate is served until they arrive"
		if o.Fallback == nil {
			msg = "acme: starting before certificates are in place; handshakes for them fail until they arrive (no fallback)"
		}
		a.log.Info(msg, "names", o.Domains, "ca", o.directory())
		a.wg.Add(1)
		go a.obtainLoop(runCtx)
	case alpnBusy && (!o.challenge(ChallengeHTTP01) || sharedStorage(o, p)):
		// The server bound its listener before building the adapter (it
		// must, to drop privileges or learn a free port), so tls-alpn-01
		// probes can only be answered once it accepts: Start obtains then.
		// With storage shared by a cluster this holds even when http-01
		// could do without: the start-up obtain may wait on a lock another
		// node holds while it orders or renews, and the load balancer may
		// send that node's tls-alpn-01 probes here. In the listen backlog
		// they would wait for the lock too, until the CA gave up and failed
		// the other node's order; accepting first lets Wrap answer them
		// from the shared storage.
		a.deferred = true
		a.log.Info("acme: certificates are obtained once the server accepts, before it reports ready", "names", o.Domains, "ca", o.directory())
	case alpnBusy:
		// Same, but http-01 is enabled and answered by our own listener:
		// obtain now with http-01 alone rather than let the CA time out on
		// a tls-alpn-01 probe nobody accepts (and count a failed
		// validation). The certificate lands in the shared cache; renewals
		// later use main, with both challenges.
		startCfg, _ := newConfig(nil, a.onEvent, true)
		if err := a.obtainNow(ctx, startCfg); err != nil {
			a.Close()
			return nil, err
		}
	default:
		if err := a.obtainNow(ctx, a.main); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

// ACMEStarter is implemented by the acme adapter. A server that binds its
// TLS listener before building adapters calls Start once its accept loops
// run and before it reports ready: the start-up obtain may need tls-alpn-01
// probes answered by Wrap on that very listener. Start returns the start-up
// obtain's error (the server should stop); it is a no-op when the factory
// already obtained (the listener was not bound yet) or with acme_async.
type ACMEStarter interface {
	Start(ctx context.Context) error
}

// Start runs the deferred start-up obtain once; later calls return its result.
func (a *acmeAdapter) Start(ctx context.Context) error {
	a.startOnce.Do(func() {
		if a.deferred {
			a.startErr = a.obtainNow(ctx, a.main)
		}
	})
	return a.startErr
}

// obtainNow loads or obtains every acme_domains certificate through cfg,
// synchronously.
func (a *acmeAdapter) obtainNow(ctx context.Context, cfg *certmagic.Config) error {
	start := time.Now()
	if err := cfg.ManageSync(ctx, a.opts.Domains); err != nil {
		return fmt.Errorf("tlsadapter: acme: obtaining certificates for %s from %s: %w (is the CA reachable and are the names pointed at this host? acme_async=true starts on the internal CA instead)",
			strings.Join(a.opts.Domains, ", "), a.opts.directory(), err)
	}
	a.log.Info("acme: certificates in place before start", "names", a.opts.Domains, "ca", a.opts.directory(),
		"storage", a.storage, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// alpnPortBusy reports whether tls-alpn-01 is enabled and its probe port is
// already bound (by the server's own listener, as a rule).
func (a *acmeAdapter) alpnPortBusy(p Params) bool {
	if !a.opts.challenge(ChallengeTLSALPN01) {
		return false
	}
	port := a.opts.TLSPort
	if port == 0 {
		port = p.Port
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(p.Host, strconv.Itoa(port)))
	if err != nil {
		return true
	}
	ln.Close()
	return false
}

// issuerTemplate is the ACMEIssuer for both Configs. Every field that matters
// is set here, so nothing falls back to certmagic.DefaultACME.
func (a *acmeAdapter) issuerTemplate(p Params, roots *x509.CertPool) certmagic.ACMEIssuer {
	o := a.opts
	iss := certmagic.ACMEIssuer{
		CA:                      o.directory(),
		Email:                   o.Email,
		Agreed:                  true, // running the acme module is the agreement; README says so
		DisableHTTPChallenge:    !o.challenge(ChallengeHTTP01),
		DisableTLSALPNChallenge: !o.challenge(ChallengeTLSALPN01),
		ListenHost:              p.Host,
		AltHTTPPort:             o.HTTPPort,
		AltTLSALPNPort:          o.TLSPort,
		TrustedRoots:            roots,
		CertObtainTimeout:       90 * time.Second,
		Logger:                  newZapLogger(a.log),
	}
	if iss.AltTLSALPNPort == 0 {
		// Probes arrive on the server's own port, where Wrap answers them;
		// certmagic only binds it itself when nothing listens there yet.
		iss.AltTLSALPNPort = p.Port
	}
	// TestCA stays empty for any other CA, so retries go to the same CA
	// (certmagic only falls back to a TestCA that is set). It must not be
	// the CA itself: certmagic then takes every order for a test order and
	// never tells the CA which certificate a renewal replaces (ARI,
	// RFC 9773), which costs the renewal the CA's rate-limit exemption.
	if o.CA == LetsEncryptProduction && !o.Staging {
		// Let's Encrypt's own advice: retry failures against staging so a
		// broken set-up does not burn production rate limits.
		iss.TestCA = LetsEncryptStaging
	}
	if o.EABKID != "" {
		iss.ExternalAccount = &acme.EAB{KeyID: o.EABKID, MACKey: o.EABHMAC}
	}
	return iss
}

// probeConfig is the configuration for tls-alpn-01 validation probes: the
// narrow exception to the server's policy (see ChallengeResponder). Exactly
// acme-tls/1, no session tickets (a resumed probe proves nothing), no client
// certificates (the CA has none), and the challenge certificate only. nil
// when tls-alpn-01 is not enabled.
func (a *acmeAdapter) probeConfig() *tls.Config {
	if !a.opts.challenge(ChallengeTLSALPN01) {
		return nil
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		NextProtos:             []string{acmez.ACMETLS1Protocol},
		SessionTicketsDisabled: true,
		ClientAuth:             tls.NoClientCert,
		GetCertificate:         a.main.GetCertificate,
	}
}

// ChallengeConfig implements ChallengeResponder: the probe configuration for
// a hello of the exact tls-alpn-01 shape, nil for anything else.
func (a *acmeAdapter) ChallengeConfig(hello *tls.ClientHelloInfo) *tls.Config {
	if a.probe == nil || !isTLSALPNProbe(hello) {
		return nil
	}
	return a.probe
}

// isTLSALPNProbe matches RFC 8737's shape exactly: SNI set and ALPN offering
// acme-tls/1 and nothing else.
func isTLSALPNProbe(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmez.ACMETLS1Protocol
}

// Certificate implements Adapter for an ordinary handshake: managed names
// from main (or the fallback while acme_async waits), other names on demand
// when allowed, and a refusal (an error) otherwise. Clients without SNI get
// the first managed name's certificate.
func (a *acmeAdapter) Certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, bool, error) {
	cert, err := a.getCertificate(hello)
	if err != nil {
		return nil, false, err
	}
	return cert, true, nil
}

// HasName implements Adapter: the managed names and those obtained on demand.
func (a *acmeAdapter) HasName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if a.domains[host] {
		return true
	}
	a.stats.mu.Lock()
	defer a.stats.mu.Unlock()
	_, ok := a.stats.names[host]
	return ok
}

func (a *acmeAdapter) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	managed := name == "" || a.domains[name]
	if managed || a.onDemand == nil {
		cert, err := a.main.GetCertificate(hello)
		if err == nil {
			return cert, nil
		}
		if managed && a.opts.Fallback != nil && len(a.domains) > 0 {
			if _, seen := a.fallbackSeen.LoadOrStore(name, struct{}{}); !seen {
				a.log.Info("acme: serving the internal CA's certificate until the ACME one arrives", "server_name", name)
			}
			return a.opts.Fallback(hello)
		}
		return nil, fmt.Errorf("%w %q: %v", ErrACMENoCertificate, name, err)
	}
	cert, err := a.onDemand.GetCertificate(hello)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrACMENoCertificate, name, err)
	}
	return cert, nil
}

// obtainLoop is acme_async's start-up: obtain in the background and retry
// with backoff (acme_retry_interval doubling up to an hour) until every
// name has a certificate or the adapter closes.
func (a *acmeAdapter) obtainLoop(ctx context.Context) {
	defer a.wg.Done()
	wait := a.opts.RetryInterval
	for attempt := 1; ; attempt++ {
		err := a.main.ManageSync(ctx, a.opts.Domains)
		if err == nil {
			a.log.Info("acme: certificates in place; the internal CA's certificate is no longer served", "names", a.opts.Domains)
			return
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("acme: obtaining certificates failed; still serving the internal CA's certificate",
			"names", a.opts.Domains, "ca", a.opts.directory(), "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Hour)
	}
}

// onEvent counts and logs certmagic's certificate events. It must return
// quickly: certmagic calls it synchronously.
func (a *acmeAdapter) onEvent(_ context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		if renewal {
			a.stats.renewed.Add(1)
			a.log.Info("acme: certificate renewed", "server_name", name, "issuer", data["issuer"])
		} else {
			a.stats.obtained.Add(1)
			a.log.Info("acme: certificate obtained", "server_name", name, "issuer", data["issuer"])
		}
		if !a.domains[name] {
			a.stats.mu.Lock()
			a.stats.names[name] = struct{}{}
			a.stats.mu.Unlock()
		}
	case "cert_failed":
		a.stats.failed.Add(1)
		a.log.Warn("acme: certificate order failed", "server_name", name, "renewal", renewal, "err", data["error"])
	case "cert_ocsp_revoked":
		a.log.Warn("acme: certificate revoked according to OCSP; replacing it", "server_name", name)
	}
	return nil
}

// onDemandEvent is onEvent for the on-demand Config, which also rate-limits
// new orders: returning an error from cert_obtaining aborts the order before
// anything reaches the CA.
func (a *acmeAdapter) onDemandEvent(ctx context.Context, event string, data map[string]any) error {
	if event == "cert_obtaining" {
		if renewal, _ := data["renewal"].(bool); !renewal {
			name, _ := data["identifier"].(string)
			if err := a.odPolicy.allowOrder(name); err != nil {
				// certmagic retries on-demand orders in the background of
				// the handshake; ErrNoRetry makes the refusal immediate.
				return certmagic.ErrNoRetry{Err: err}
			}
		}
	}
	return a.onEvent(ctx, event, data)
}

// listenHTTP opens the plain HTTP listener: http-01 answers, and a 308 to
// HTTPS for everything else, so port 80 is useful rather than just open.
func (a *acmeAdapter) listenHTTP(host string) error {
	addr := net.JoinHostPort(host, strconv.Itoa(a.opts.HTTPPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("tlsadapter: acme: http-01 listener on %s: %w (set acme_http_port, or acme_challenges=tls-alpn-01)", addr, err)
	}
	a.httpLn = ln
	a.httpSrv = &http.Server{
		Handler:           a.issuer.HTTPChallengeHandler(http.HandlerFunc(a.redirect)),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	a.log.Info("acme: plain HTTP listener answering http-01 and redirecting to HTTPS", "listener", ln.Addr().String())
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("acme: plain HTTP listener stopped", "listener", ln.Addr().String(), "err", err)
		}
	}()
	return nil
}

// HTTPAddr is the plain HTTP listener's address (nil without http-01); tests
// and the server's start-up banner read it.
func (a *acmeAdapter) HTTPAddr() net.Addr {
	if a.httpLn == nil {
		return nil
	}
	return a.httpLn.Addr()
}

// redirect sends a plain HTTP request to the same host and path over HTTPS.
func (a *acmeAdapter) redirect(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" || strings.ContainsAny(host, "/\\@") {
		http.Error(w, "missing or bad Host header", http.StatusBadRequest)
		return
	}
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	port := a.port
	if a.opts.HTTPSPort != 0 {
		port = a.opts.HTTPSPort
	}
	if port != 0 && port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	w.Header().Set("Connection", "close")
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// Reload is a no-op: certmagic's maintenance already renews certificates and
// reloads them from storage; changed acme_* options need a new adapter.
func (a *acmeAdapter) Reload(context.Context) error { return nil }

// Close stops the plain HTTP listener, the background obtain and certmagic's
// maintenance (which releases its storage locks).
func (a *acmeAdapter) Close() error {
	var err error
	a.closeOnce.Do(func() {
		if a.cancel != nil {
			a.cancel()
		}
		if a.httpSrv != nil {
			err = a.httpSrv.Close()
		}
		a.wg.Wait()
		a.cache.Stop()
		if a.odPolicy != nil {
			a.odPolicy.close()
		}
	})
	return err
}

// ACMEStats returns the counters and each managed name's state.
func (a *acmeAdapter) ACMEStats() ACMEStats {
	s := ACMEStats{
		Obtained: a.stats.obtained.Load(),
		Renewed:  a.stats.renewed.Load(),
		Failed:   a.stats.failed.Load(),

		StorageFailed: a.stats.storageFailed.Load(),
	}
	names := append([]string(nil), a.opts.Domains...)
	a.stats.mu.Lock()
	for n := range a.stats.names {
		names = append(names, n)
	}
	a.stats.mu.Unlock()
	for _, n := range names {
		st := ACMENameState{Name: n, State: "pending"}
		var best *x509.Certificate
		for _, c := range a.cache.AllMatchingCertificates(strings.ToLower(n)) {
			if c.Leaf != nil && (best == nil || c.Leaf.NotAfter.After(best.NotAfter)) {
				best = c.Leaf
			}
		}
		if best != nil {
			st = nameState(n, best, float64(a.opts.RenewWindow), time.Now())
		}
		s.Names = append(s.Names, st)
	}
	return s
}

// nameState describes leaf as the certificate for name at now.
func nameState(name string, leaf *x509.Certificate, window float64, now time.Time) ACMENameState {
	st := ACMENameState{
		Name:     name,
		NotAfter: leaf.NotAfter,
		DaysLeft: leaf.NotAfter.Sub(now).Hours() / 24,
		Serial:   leaf.SerialNumber.Text(16),
		State:    "valid",
	}
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	switch {
	case now.After(leaf.NotAfter):
		st.State = "expired"
	case leaf.NotAfter.Sub(now) < time.Duration(float64(lifetime)*window):
		st.State = "renewal due"
	}
	return st
}

// devCAFallback is acme_async's default Fallback: one leaf for every
// acme_domains name from the internal module's development CA (the same CA
// under the same data directory, so a developer who trusts it sees a
// verifiable site during the wait). A CA that cannot be opened is logged and
// leaves no fallback: handshakes then fail until the ACME certificate lands.
func devCAFallback(p Params, names []string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	ca, err := certs.OpenDevCA(DevCADir(p.DataDir))
	if err != nil {
		p.Logger.Warn("acme: internal CA unavailable; no certificate is served until the ACME one arrives", "err", err)
		return nil
	}
	names = append([]string(nil), names...)
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Certificate(names...) }
}

// acmeStorage is certmagic's storage: files in acme_storage when it is set,
// else Params.Storage (the cluster's shared storage) when there is one, else
// files in DATA_DIR/acme.
func acmeStorage(o ACMEOptions, p Params) (certmagic.Storage, error) {
	if sharedStorage(o, p) {
		return p.Storage, nil
	}
	dir, err := acmeStorageDir(o, p.DataDir)
	if err != nil {
		return nil, err
	}
	return &certmagic.FileStorage{Path: dir}, nil
}

// sharedStorage reports whether certmagic's storage is the cluster's
// (Params.Storage), which other nodes use at the same time.
func sharedStorage(o ACMEOptions, p Params) bool {
	return o.Storage == "" && p.Storage != nil
}

// describeStorage names a storage for logs: a directory, or what the
// storage says it is (a PostgreSQL URL with its password masked).
func describeStorage(s certmagic.Storage) string {
	switch s := s.(type) {
	case *certmagic.FileStorage:
		return s.Path
	case fmt.Stringer:
		return s.String()
	}
	return fmt.Sprintf("%T", s)
}

// acmeStorageDir is acme_storage, or DATA_DIR/acme.
func acmeStorageDir(o ACMEOptions, dataDir string) (string, error) {
	if o.Storage != "" {
		return filepath.Abs(o.Storage)
	}
	if dataDir == "" {
		return "", errors.New("tlsadapter: acme_storage: not set and the server has no data directory")
	}
	return filepath.Join(dataDir, "acme"), nil
}

// ensurePrivateDir creates dir 0700. An existing directory that others can
// read is used but reported: account and certificate keys live below it.
func ensurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tlsadapter: acme_storage: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("tlsadapter: acme_storage: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("tlsadapter: acme_storage: %s is not a directory", dir)
	}
	return nil
}

// loadCARoots reads acme_ca_root; nil (the system roots) when unset.
func loadCARoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pemData, err := boundedread.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsadapter: acme_ca_root: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("tlsadapter: acme_ca_root: no PEM certificates in %s", file)
	}
	return pool, nil
}

// storageProbeKey is written and deleted to check that storage is writable.
const storageProbeKey = "tlsedge-storage-probe"

// watchStorage checks every interval that the storage takes writes (a
// directory, or a shared store such as PostgreSQL). certmagic on unwritable
// storage keeps serving the certificates it has cached but cannot save
// renewals, and says so only in passing; this makes it an error an operator
// sees once per episode, with what to fix, and a counter.
func (a *acmeAdapter) watchStorage(ctx context.Context, store certmagic.Storage, interval time.Duration) {
	defer a.wg.Done()
	fix := "make the storage reachable and writable: engine.storage's database and user"
	if _, ok := store.(*certmagic.FileStorage); ok {
		fix = "make acme_storage writable by the user tlsedge runs as"
	}
	failing := false
	check := func() {
		err := store.Store(ctx, storageProbeKey, []byte("ok"))
		if err == nil {
			err = store.Delete(ctx, storageProbeKey)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			a.stats.storageFailed.Add(1)
			if !failing {
				a.log.Error("acme: storage is not writable; renewed certificates cannot be saved, the cached ones are served meanwhile",
					"storage", a.storage, "err", err, "fix", fix)
			}
			failing = true
		case err == nil && failing:
			a.log.Info("acme: storage is writable again", "storage", a.storage)
			failing = false
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}
