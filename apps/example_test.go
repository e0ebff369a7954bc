package apps_test

import (
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"tlsedge/apps"
	"tlsedge/policy"
	"tlsedge/router"
	"tlsedge/server/httpcore"
)

// Example shows the wiring a server does: one Metrics and one AccessLog for
// the whole mount table, every non-text target through apps.New with the
// same Env, the middleware around the dispatcher, and SIGUSR1 reopening the
// access log.
func Example() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	trusted, _ := policy.NewTrustedProxies("10.0.0.0/8") // a config file or flag parses this at load
	opts := apps.Options{AccessLog: "-", AccessLogFormat: "json", TrustedProxies: trusted}
	if err := opts.Validate(); err != nil {
		log.Error("bad options", "err", err)
		return
	}

	var core *httpcore.Core // built below, around the handler
	metrics := apps.NewMetrics(apps.Sources{
		Core: func() httpcore.Stats { return core.Stats() }, // first called at the first scrape
		// TLS: apps.AdapterTLSStats(srv.Adapter, nil), with srv the *server.Server.
	})
	env := apps.Env{
		Logger:  log,
		Options: opts,
		Metrics: metrics,
		// IdentityHeaders, TLSHeaders: hooks from the peer-credential and TLS code.
	}
	d := router.NewDispatcher()
	for prefix, target := range map[string]string{
		"/":        "dir:/srv/www",
		"/api":     "http://127.0.0.1:8080",
		"/app":     "unix:/run/app.sock:/v1",
		"/_status": "status:",
	} {
		h, err := apps.New(target, env)
		if err != nil {
			log.Error("mount", "prefix", prefix, "err", err)
			return
		}
		d.Mount(prefix, h)
	}
	accessLog, err := apps.NewAccessLog(opts, os.Stderr)
	if err != nil {
		log.Error("access log", "err", err)
		return
	}
	var handler http.Handler = accessLog.Wrap(metrics.Wrap(d))

	o := httpcore.DefaultOptions()
	o.Handler, o.Statistics, o.Logger = handler, true, log
	if core, err = httpcore.New(o); err != nil {
		log.Error("core", "err", err)
		return
	}

	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			if err := accessLog.Reopen(); err != nil {
				log.Warn("access log reopen failed; still writing the old file", "err", err)
			}
		}
	}()
	// The accept loop then calls core.ServeConn for every connection.
}
