package cli

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/certmagic"

	"tlsedge/apps"
	"tlsedge/config"
	"tlsedge/control"
	"tlsedge/policy"
	"tlsedge/router"
	"tlsedge/server"
	"tlsedge/server/httpcore"
	"tlsedge/storage"
	"tlsedge/tlsadapter"
)

// newLogger builds the process logger from the logging options. The
// returned file is engine.log_file (nil when logging to stderr), which
// SIGUSR1 reopens.
func newLogger(p *Process, stderr io.Writer) (*slog.Logger, *logFile, error) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(p.LogLevel)) // validated by Load
	w := stderr
	var lf *logFile
	if p.LogFile != "" {
		var err error
		if lf, err = openLogFile(p.LogFile); err != nil {
			return nil, nil, err
		}
		w = lf
	}
	opts := &slog.HandlerOptions{Level: level}
	if p.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lf, nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), lf, nil
}

// edge is the running set of servers and what the command keeps for each:
// its metrics, which outlive configuration reloads.
type edge struct {
	*server.Engine
	storage certmagic.Storage // engine.storage; nil: files under the data directory
	cluster *clusterState     // the same, with what the status page says of it
	log     *slog.Logger
	logs    *accessLogs
	reg     *tlsadapter.Registry
	metrics map[string]*apps.Metrics // by server name
	// cookieKey signs the sticky cookies of pools without
	// proxy_lb_cookie_key_file: made once, so reloads keep clients where
	// they were.
	cookieKey []byte
}

// openStorage opens engine.storage: nil for files under the data directory,
// a FileStorage for a directory, or PostgreSQL (migrated when migrate is set,
// as a serving node does; tlsedge check does not). close releases it.
func openStorage(ctx context.Context, o *Options, log *slog.Logger, migrate bool) (st certmagic.Storage, close func(), err error) {
	loc := o.Process.Storage
	switch {
	case loc.DSN() != "":
		open := storage.ConnectPostgres
		if migrate {
			open = storage.OpenPostgres
		}
		pg, err := open(ctx, loc.DSN(), storage.PostgresOptions{Logger: log})
		if err != nil {
			return nil, nil, config.KeyError("storage", "%s (tlsedge check tells more)", strings.TrimPrefix(err.Error(), "storage: "))
		}
		log.Info("storage: shared state in PostgreSQL", "storage", pg.String(), "schema_version", storage.SchemaVersion)
		return pg, pg.Close, nil
	case loc.Dir() != "":
		return &certmagic.FileStorage{Path: loc.Dir()}, func() {}, nil
	}
	return nil, func() {}, nil
}

// buildEngine builds the servers the options describe, sharing st (see
// openStorage).
func buildEngine(o *Options, cl *clusterState, log *slog.Logger, logs *accessLogs) (*edge, error) {
	if o.Process.DataDir == "" {
		d, err := server.DefaultDataDir()
		if err != nil {
			return nil, err
		}
		o.Process.DataDir = d
	}
	inherited, err := systemdListeners(o)
	if err != nil {
		return nil, err
	}
	e := &edge{Engine: &server.Engine{}, storage: cl.storage, cluster: cl, log: log, logs: logs, reg: tlsadapter.NewRegistry(), metrics: map[string]*apps.Metrics{}}
	e.cookieKey = make([]byte, 32)
	rand.Read(e.cookieKey)
	for i, c := range o.Servers() {
		c.Listeners = inherited[i]
		var s *server.Server // the metrics read it at the first scrape, after New
		e.metrics[c.Name] = apps.NewMetrics(apps.Sources{
			Server:  c.Name,
			Core:    func() httpcore.Stats { return s.Stats() },
			TLS:     tlsStats(func() *tlsadapter.Terminator { return s.Terminator() }),
			Version: buildVersion,
			Servers: e.summaries,
			Cluster: func() apps.ClusterStatus { return cl.status(func() *tlsadapter.Terminator { return s.Terminator() }) },
			ProxyProtocol: func() apps.ProxyProtocolCounts {
				st := s.ProxyProtocolStats()
				return apps.ProxyProtocolCounts{Accepted: st.Accepted, Untrusted: st.Untrusted, Bad: st.Bad}
			},
			Policy: func() []policy.Count { return s.PolicyCounts() },
			Quota:  func() []policy.QuotaCount { return s.QuotaCounts() },
		})
		if err := e.wire(&c, o); err != nil {
			return nil, err
		}
		if s, err = server.New(c); err != nil {
			return nil, o.Locate(err)
		}
		e.Subscribe(s)
	}
	return e, nil
}

// wire gives a server config what the command adds to the options: the SSL
// adapters, the data directory, the logger, the apps its mounts name (or the
// welcome page), its metrics, its access log and request ids.
func (e *edge) wire(c *server.Config, o *Options) error {
	c.Registry, c.DataDir, c.Logger, c.Storage = e.reg, o.Process.DataDir, e.log, e.storage
	c.TicketKeys = e.cluster.ticketKeys()
	if c.Mount.Len() == 0 && len(c.Handlers) == 0 {
		c.Handlers = map[string]http.Handler{"/": welcomeHandler()}
	}
	al, err := e.logs.open(c.Apps)
	if err != nil {
		return fmt.Errorf("%saccess_log: %w", c.KeyPrefix(), err)
	}
	m := e.metrics[c.Name]
	// The proxy_ssl_* files are read and parsed once per load, here.
	upTLS, err := apps.UpstreamTLSConfig(&c.Apps)
	if err != nil {
		return o.Locate(config.Prefix(err, c.KeyPrefix()))
	}
	env := apps.Env{Logger: e.log, Options: c.Apps, Metrics: m, UpstreamTLS: upTLS, CookieKey: e.cookieKey}
	c.Targets = func(target string) (http.Handler, error) { return apps.New(target, env) }
	// Request metrics cost a little on every request; they are kept only
	// where a status: mount shows them.
	measured := slices.ContainsFunc(c.Mount.Specs(), func(m router.MountSpec) bool { return strings.HasPrefix(m.Target, "status:") })
	// Every request already has its id: the server's request core gives it
	// one before anything else runs (policy.AssignRequestID).
	c.Middleware = func(h http.Handler) http.Handler {
		if measured {
			h = m.Wrap(h)
		}
		return al.Wrap(h)
	}
	return nil
}

// reconfigure applies a freshly read configuration (file and flags) to the
// running servers. Process options and the set of servers cannot change
// without a restart; each server refuses changes to its sockets. Everything
// is checked before anything is applied.
func (e *edge) reconfigure(ctx context.Context, args []string, o *Options) (*Options, error) {
	next, err := Load(args, io.Discard)
	if err != nil {
		return nil, err
	}
	if err := next.Validate(); err != nil {
		return nil, err
	}
	next.Process.DataDir = o.Process.DataDir
	var changed []string
	cur, nxt := config.Fields(&o.Process), config.Fields(&next.Process)
	for i := range cur {
		if cur[i].String() != nxt[i].String() {
			changed = append(changed, "engine."+cur[i].Name)
		}
	}
	if len(changed) > 0 {
		return nil, fmt.Errorf("%s changed: restart tlsedge to apply", strings.Join(changed, ", "))
	}
	servers, configs := e.Servers(), next.Servers()
	for i, c := range configs {
		if len(configs) != len(servers) || servers[i].Config().Name != c.Name {
			return nil, errors.New("servers were added or removed: restart tlsedge to apply")
		}
	}
	for i := range configs {
		configs[i].Listeners = servers[i].Config().Listeners
		if err := e.wire(&configs[i], next); err != nil {
			return nil, err
		}
		if _, err := server.New(configs[i]); err != nil { // checks without binding
			return nil, err
		}
	}
	var errs []error
	for i, s := range servers {
		errs = append(errs, s.Reconfigure(ctx, configs[i]))
	}
	return next, errors.Join(errs...)
}

// reconfigureGuarded is e.reconfigure with a panic while loading or building
// the new configuration turned into an error: a reload must never take down
// the server it was asked to change.
func reconfigureGuarded(ctx context.Context, e *edge, args []string, o *Options) (next *Options, err error) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("reload panicked", "panic", p, "stack", string(debug.Stack()))
			next, err = nil, fmt.Errorf("reload refused: loading the new configuration panicked: %v", p)
		}
	}()
	return e.reconfigure(ctx, args, o)
}

// accessLogs are the access logs of all servers, one per destination, so
// servers sharing a file share one writer; SIGUSR1 reopens them all.
type accessLogs struct {
	stderr io.Writer
	byDest map[string]*apps.AccessLog
}

func (l *accessLogs) open(o apps.Options) (*apps.AccessLog, error) {
	key := o.AccessLog + "|" + o.AccessLogFormat
	if al, ok := l.byDest[key]; ok {
		return al, nil
	}
	al, err := apps.NewAccessLog(o, l.stderr)
	if err != nil {
		return nil, err
	}
	l.byDest[key] = al
	return al, nil
}

func (l *accessLogs) reopen() error {
	var errs []error
	for _, al := range l.byDest {
		errs = append(errs, al.Reopen())
	}
	return errors.Join(errs...)
}

func (l *accessLogs) Close() error {
	var errs []error
	for _, al := range l.byDest {
		errs = append(errs, al.Close())
	}
	return errors.Join(errs...)
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := Load(args, stdout)
	if err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Process.Daemonize && !isDaemonChild() {
		return daemonize(stderr)
	}
	ready := newReadyReporter() // tells a daemonizing parent how start-up went
	err = serveForeground(ctx, args, o, stdout, stderr, ready)
	ready.fail(err)
	return err
}

func serveForeground(ctx context.Context, args []string, o *Options, stdout, stderr io.Writer, ready *readyReporter) error {
	log, logFile, err := newLogger(&o.Process, stderr)
	if err != nil {
		return err
	}
	if logFile != nil {
		defer logFile.Close()
	}

	// Signals are caught before anything binds, so none is lost in start-up.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	logs := &accessLogs{stderr: stderr, byDest: map[string]*apps.AccessLog{}}
	defer logs.Close()
	cl, closeStorage, err := openCluster(ctx, o, log)
	if err != nil {
		return err
	}
	defer closeStorage() // after the servers stop: releases this node's locks
	e, err := buildEngine(o, cl, log, logs)
	if err != nil {
		return err
	}
	// reload re-reads the config file (or, without one, the certificates) and
	// applies it; on any error everything keeps serving as it was. SIGHUP and
	// the control socket both come here, one at a time.
	var reloadMu sync.Mutex
	reload := func(ctx context.Context) error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		sdNotify("RELOADING=1")
		defer sdNotify("READY=1")
		if o.Process.Config == "" {
			if err := e.Reload(ctx); err != nil {
				log.Error("reload failed; still serving the previous certificates", "err", err)
				return err
			}
			log.Info("reloaded")
			return nil
		}
		next, err := reconfigureGuarded(ctx, e, args, o)
		if err != nil {
			log.Error("reload failed; still serving the previous configuration", "config", o.Process.Config, "err", err)
			return err
		}
		changed := changedKeys(o, next)
		*o = *next
		if len(changed) == 0 {
			changed = []string{"nothing (certificates reread)"}
		}
		log.Info("reloaded", "config", o.Process.Config, "changed", strings.Join(changed, ", "))
		return nil
	}
	ctlStop := make(chan struct{}, 1)
	var ctlServer *control.Server
	// Between binding and serving: the control socket is bound too, then
	// root is given up.
	beforeServe := func() error {
		if o.Process.Control.Enabled() {
			cs, err := startControl(o, e.Engine, log, ctlStop, reload, &reloadMu)
			if err != nil {
				return err
			}
			ctlServer = cs
		}
		return dropPrivileges(o.Process.User, o.Process.Group, o.Process.DataDir, log)
	}
	if err := e.Start(ctx, beforeServe); err != nil {
		if ctlServer != nil {
			ctlServer.Close()
		}
		return err
	}
	if ctlServer != nil {
		// Gracefully: the request that asked for the stop still gets its
		// whole answer.
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if ctlServer.Shutdown(sctx) != nil {
				ctlServer.Close()
			}
		}()
	}
	stop := func() error {
		sdNotify("STOPPING=1")
		return e.Stop(context.WithoutCancel(ctx))
	}
	if o.Process.Pidfile != "" {
		if err := writePidfile(o.Process.Pidfile); err != nil {
			stop()
			return err
		}
		defer os.Remove(o.Process.Pidfile)
	}
	for _, s := range e.Servers() {
		logServer(log, s)
	}
	var banner strings.Builder
	printBanner(&banner, e.Engine)
	fmt.Fprint(stdout, banner.String())
	sdNotify("READY=1\nMAINPID=" + strconv.Itoa(os.Getpid()))
	ready.ok(banner.String())

	waitErr := make(chan error, 1)
	go func() { waitErr <- e.Wait(ctx) }()
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				log.Info("reloading (SIGHUP)")
				reload(ctx)
			case syscall.SIGUSR1:
				// The process log first, so that the line saying so lands
				// in the new file.
				if logFile != nil {
					if err := logFile.Reopen(); err != nil {
						log.Error("reopening engine.log_file failed; still writing the old file", "log_file", o.Process.LogFile, "err", err)
					}
				}
				if err := logs.reopen(); err != nil {
					log.Error("reopening access logs failed; still writing the old files", "err", err)
				} else {
					log.Info("logs reopened (SIGUSR1)")
				}
			default:
				log.Info("stopping", "signal", sig.String())
				return stop()
			}
		case <-ctx.Done():
			log.Info("stopping")
			return stop()
		case <-ctlStop:
			log.Info("stopping (control socket)")
			return stop()
		case err := <-waitErr:
			stop()
			if errors.Is(err, server.ErrServerClosed) {
				return nil
			}
			return err
		}
	}
}

func logServer(log *slog.Logger, s *server.Server) {
	c := s.Config()
	name := c.Name
	if name == "" {
		name = "main"
	}
	mounts := make([]string, 0, c.Mount.Len())
	for _, m := range c.Mount.List() {
		if len(m) > 80 {
			m = fmt.Sprintf("%s...(%d bytes)", m[:60], len(m))
		}
		mounts = append(mounts, m)
	}
	if len(mounts) == 0 {
		mounts = []string{"/=welcome"}
	}
	addrs := make([]string, 0)
	for _, a := range s.Addrs() {
		addrs = append(addrs, a.String())
	}
	log.Info("serving", "server", name, "base", s.Base(), "listen", strings.Join(addrs, ","),
		"ssl_module", c.TLS.SSLModule, "mounts", strings.Join(mounts, " "))
}

// printBanner tells a person where the server is and how to reach it; with
// the local CA, a curl line that verifies the certificate as printed.
func printBanner(w io.Writer, e *server.Engine) {
	for _, s := range e.Servers() {
		base := s.Base()
		if s.Scheme() == "" {
			continue
		}
		caFile, privateCA := "", ""
		if t := s.Terminator(); t == nil {
			continue
		} else if ca, ok := t.Adapter().(tlsadapter.CAFiler); ok {
			caFile = ca.CAFile()
		} else if s.Scheme() == "https" {
			// Certificate files from a private CA: the roots they are
			// checked against are what a client must trust too.
			privateCA = s.Config().TLS.SSLTrustedCertificate
		}
		curl := "curl"
		switch {
		case caFile != "":
			curl += " --cacert " + shellQuote(caFile)
		case privateCA != "":
			curl += " --cacert " + shellQuote(privateCA)
		}
		if _, unix := s.BindAddr().(*net.UnixAddr); unix {
			fmt.Fprintf(w, "tlsedge is serving %s on the UNIX socket %s\n", s.Scheme(), base)
			if name, ok := strings.CutPrefix(base, "@"); ok {
				curl += " --abstract-unix-socket " + shellQuote(name)
			} else {
				curl += " --unix-socket " + shellQuote(base)
			}
			curl += " " + s.Scheme() + "://localhost/"
		} else {
			fmt.Fprintf(w, "tlsedge is serving %s/\n", base)
			curl += " " + base + "/"
		}
		if caFile != "" {
			fmt.Fprintf(w, "  local CA: %s (trust it to verify this server)\n", caFile)
		}
		fmt.Fprintf(w, "  try:      %s\n", curl)
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writePidfile(path string) error {
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

// changedKeys names the server options whose values differ between two
// configurations (server.KEY, server.NAME.KEY), for the reload's log line;
// the values are not logged, since some are secrets.
func changedKeys(old, next *Options) []string {
	var out []string
	olds, nexts := old.Servers(), next.Servers()
	for i := range min(len(olds), len(nexts)) {
		prefix := olds[i].KeyPrefix() // server.NAME. for an extra server
		if prefix == "" {
			prefix = "server."
		}
		a, b := olds[i].Options().Fields, nexts[i].Options().Fields
		for j := range a {
			if a[j].String() != b[j].String() {
				out = append(out, prefix+a[j].Name)
			}
		}
	}
	return out
}

// summaries lists every server of the process for the status page.
func (e *edge) summaries() []apps.ServerSummary {
	var out []apps.ServerSummary
	for _, s := range e.Servers() {
		c := s.Config()
		st := s.Stats()
		out = append(out, apps.ServerSummary{Name: cmp.Or(c.Name, "main"), Base: s.Base(), Module: c.TLS.SSLModule,
			Connections: s.OpenConnections(), Requests: st.Requests})
	}
	return out
}
