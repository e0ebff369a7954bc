package apps

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"tlsedge/policy"
	"tlsedge/server/httpcore"
)

// Env is what New needs beyond the target: options, logging and the hooks
// through which other packages supply facts about a connection. The zero
// value works. Env is read once by New; later changes have no effect.
type Env struct {
	// Logger receives errors and upstream failures. Nil discards them.
	Logger *slog.Logger

	// Options are the user-facing settings; New validates them.
	Options Options

	// IdentityHeaders adds peer-credential and client-identity headers
	// (X-Remote-*, Remote-User) to proxied requests. Nil means PeerHeaders:
	// X-Remote-Pid/-Uid/-Gid from UNIX-socket peer credentials.
	IdentityHeaders HeaderHook

	// TLSHeaders adds the TLS facts (X-SSL-* headers named after mod_ssl's
	// SSL_* variables) to proxied requests. Nil means SSLHeaders. Either way
	// clients' own X-SSL-* headers are removed first.
	TLSHeaders HeaderHook

	// UpstreamTLS configures connections to https:// upstreams (roots,
	// client certificate). It is cloned; an empty ServerName becomes the
	// upstream's host. Nil means UpstreamTLSConfig(&Options), built for
	// each https:// mount: a server that loads a configuration builds it
	// once, there, and sets it here.
	UpstreamTLS *tls.Config

	// Trust is the parsed trusted_proxies list shared with the guard in
	// front of every handler (policy.EdgeHeaders). Nil parses
	// Options.TrustedProxies.
	Trust *policy.Trust

	// Metrics, when set, is what a status: mount shows and serves at
	// /metrics. Nil gives the status: mount its own, fed by Stats only.
	Metrics *Metrics

	// CookieKey signs the sticky cookies of proxy_lb cookie:NAME when
	// proxy_lb_cookie_key_file is empty. A server sets one key made at
	// start for every load, so that a reload keeps clients where they
	// were; nil makes a random key per pool.
	CookieKey []byte
}

func (e *Env) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// targetHelp lists what New accepts, for error messages.
const targetHelp = "http://HOST:PORT[/base], https://HOST:PORT[/base], unix:/path.sock[:/base], dir:/path, status:, redirect:https://HOST[/path], text:BODY, or a pool: upstreams separated by spaces, each with an optional ;weight=N"

// New returns the handler for a mount target. Errors name the target and
// what is allowed.
//
// Proxy and dir: handlers hold resources (idle upstream connections, the
// open root directory) and implement io.Closer: a server that replaces its
// mount table on reload should Close the handlers it retires once their
// requests are done.
func New(target string, env Env) (http.Handler, error) {
	if err := env.Options.Validate(); err != nil {
		return nil, err
	}
	bad := func(why string, args ...any) error {
		return fmt.Errorf("%w %q: %s (want %s)", ErrBadTarget, target, fmt.Sprintf(why, args...), targetHelp)
	}
	if isPoolTarget(target) {
		pl, err := newPool(strings.TrimSpace(target), env)
		if err != nil {
			return nil, err
		}
		return pl, nil
	}
	scheme, rest, ok := strings.Cut(target, ":")
	if !ok {
		return nil, bad("no scheme")
	}
	switch scheme {
	case "text":
		return httpcore.Text(rest), nil
	case "http", "https":
		u, err := url.Parse(target)
		if err != nil {
			return nil, bad("%v", err)
		}
		if u.Host == "" || u.Port() == "" || u.Hostname() == "" {
			return nil, bad("upstream needs HOST:PORT")
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, bad("upstream may only have a host, port and base path")
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = strings.TrimSuffix(u.RawPath, "/")
		return newProxy(target, u, "tcp", u.Host, env)
	case "unix":
		sock, base, _ := strings.Cut(rest, ":")
		if !filepath.IsAbs(sock) {
			return nil, bad("socket path must be absolute")
		}
		if base != "" && !strings.HasPrefix(base, "/") {
			return nil, bad("base path must start with /")
		}
		u := &url.URL{Scheme: "http", Host: "localhost", Path: strings.TrimSuffix(base, "/")}
		return newProxy(target, u, "unix", sock, env)
	case "dir":
		if !filepath.IsAbs(rest) {
			return nil, bad("directory must be an absolute path")
		}
		return newStatic(rest, env)
	case "status":
		if rest != "" {
			return nil, bad("status: takes no argument")
		}
		return newStatus(env), nil
	case "redirect":
		u, err := url.Parse(rest)
		if err != nil {
			return nil, bad("%v", err)
		}
		if u.Scheme != "https" && u.Scheme != "http" {
			return nil, bad("redirect target must be an http:// or https:// URL")
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, bad("redirect target may only have a host, port and base path")
		}
		if h := u.Hostname(); h != "" && net.ParseIP(h) == nil && strings.ContainsAny(h, " /") {
			return nil, bad("bad host %q", h)
		}
		return &Redirect{Scheme: u.Scheme, Host: u.Host, Base: strings.TrimSuffix(u.EscapedPath(), "/")}, nil
	}
	return nil, bad("unknown scheme %q", scheme)
}
