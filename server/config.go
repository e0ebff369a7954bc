package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"

	"tlsedge/apps/appopt"
	"tlsedge/compression"
	"tlsedge/config"
	"tlsedge/policy"
	"tlsedge/router"
	"tlsedge/server/httpcore"
	"tlsedge/tlsadapter"
)

// Config configures one Server. Build it with NewConfig, which sets every
// default; the zero value is not a usable configuration. A Config is copied
// when a Server is made: later changes to it do not reach a running server.
type Config struct {
	SocketHost      string        `opt:"socket_host" default:"127.0.0.1" group:"Listener" help:"address or host name to listen on: IPv4, IPv6, a name (every address it resolves to), 0.0.0.0 or :: (all interfaces)"`
	SocketPort      int           `opt:"socket_port" default:"8443" group:"Listener" help:"TCP port; 0 picks a free one and the real one is reported"`
	SocketFile      string        `opt:"socket_file" group:"Listener" help:"UNIX socket path, or @name for a Linux abstract socket; replaces socket_host and socket_port"`
	SocketFileMode  os.FileMode   `opt:"socket_file_mode" default:"0660" group:"Listener" help:"permissions of the UNIX socket file"`
	SocketFileOwner string        `opt:"socket_file_owner" group:"Listener" help:"user (name or uid) to own the UNIX socket file"`
	SocketFileGroup string        `opt:"socket_file_group" group:"Listener" help:"group (name or gid) of the UNIX socket file"`
	SocketQueueSize int           `opt:"socket_queue_size" default:"1024" group:"Listener" help:"listen backlog: connections the kernel queues before accept (capped by net.core.somaxconn)"`
	ShutdownTimeout time.Duration `opt:"shutdown_timeout" default:"5s" group:"Listener" help:"time in-flight requests get to finish on stop"`
	Nodelay         bool          `opt:"nodelay" default:"true" group:"Listener" help:"set TCP_NODELAY on accepted connections"`
	ReusePort       bool          `opt:"reuse_port" default:"false" group:"Listener" help:"set SO_REUSEPORT so several processes can share the port"`
	// ProxyProtocolAccept makes every connection start with a PROXY
	// protocol header (v1 or v2) from a load balancer in
	// ProxyProtocolTrusted: the client address it carries becomes the
	// connection's remote address everywhere. A connection from anyone
	// else is closed at accept; one without a valid header within
	// ProxyProtocolTimeout is closed too. With TLS the header comes
	// before the ClientHello.
	ProxyProtocolAccept  bool                  `opt:"proxy_protocol_accept" default:"false" group:"Listener" help:"read a PROXY protocol header (v1 or v2) first on every connection, from proxy_protocol_trusted peers only; its client address is the connection's"`
	ProxyProtocolTrusted policy.TrustedProxies `opt:"proxy_protocol_trusted" default:"" group:"Listener" help:"load balancers (IP or CIDR) allowed to send PROXY protocol headers; with proxy_protocol_accept, any other peer is refused at accept"`
	ProxyProtocolTimeout time.Duration         `opt:"proxy_protocol_timeout" default:"5s" group:"Listener" help:"longest wait for a connection's PROXY protocol header (then it is closed)"`
	Mount                router.Mounts         `opt:"mount" group:"Apps" help:"[HOST]/PREFIX=TARGET to serve; repeatable (text:BODY, and more as listed in the README); HOST is a name or *.name, matched against the request's Host"`
	HeaderRule           router.HeaderRules    `opt:"header_rule" group:"Apps" help:"KEY=request|response set|add|remove NAME [VALUE] for the mount KEY (* for all); repeatable; VALUE may hold {client_ip}, {host}, {tls_client_cn}, {peer_uid}... (README)"`

	Core     httpcore.Options    // pool, timeouts, limits, statistics
	TLS      tlsadapter.Options  // ssl_* and acme_*
	Peer     policy.PeerOptions  // peercreds*
	Rule     policy.RuleOptions  // policy
	Apps     appopt.Options      // proxy, static files, access log
	Compress compression.Options // compress_*: response compression, off by default

	// Name is the server's name in an Engine: "" for the main server, NAME for
	// server.NAME.* keys.
	Name string `opt:"-"`
	// Handlers mounts Go handlers by path prefix, next to the Mount specs.
	Handlers map[string]http.Handler `opt:"-"`
	// HandlersServeExtendedConnect says the Handlers answer WebSocket over
	// h2 (RFC 8441: method CONNECT, r.Header[":protocol"]). Without it, a
	// server with Handlers does not offer extended CONNECT at all: a browser
	// that is offered it opens every WebSocket to the origin that way and
	// never falls back to the HTTP/1.1 Upgrade most Go WebSocket packages
	// expect. The proxy and the other mount targets need no such promise.
	HandlersServeExtendedConnect bool `opt:"-"`
	// Targets resolves a mount TARGET other than text:BODY. Nil allows only text:.
	Targets func(target string) (http.Handler, error) `opt:"-"`
	// Middleware wraps the whole mount table (metrics, access log); nil adds
	// nothing.
	Middleware func(http.Handler) http.Handler `opt:"-"`
	// TLSConfig is the seeds' ssl_context: a whole *tls.Config handed to the
	// SSL adapter as its base.
	TLSConfig *tls.Config `opt:"-"`
	// Registry holds the SSL adapters; nil means tlsadapter.NewRegistry().
	Registry *tlsadapter.Registry `opt:"-"`
	// Listeners are already-open listeners to serve on instead of binding
	// (systemd socket activation); the socket_* options are then not used.
	Listeners []net.Listener `opt:"-"`
	// DataDir is where the local development CA and ACME data live.
	DataDir string `opt:"-"`
	// Storage is the state shared by the nodes of a cluster (engine.storage):
	// the acme module keeps its accounts, certificates and locks there unless
	// acme_storage names a directory. Nil means files under DataDir.
	Storage certmagic.Storage `opt:"-"`
	// TicketKeys is the session-ticket key ring the nodes of a cluster
	// share (engine.storage on PostgreSQL); nil: each server rotates keys
	// of its own in memory.
	TicketKeys tlsadapter.TicketKeySource `opt:"-"`
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger `opt:"-"`
}

// NewConfig returns a Config holding every default.
func NewConfig() Config {
	var c Config
	if err := config.NewTable(&c).Reset(); err != nil {
		panic(err) // a bad default tag: caught by the first test
	}
	return c
}

// Options returns the option table of c: setting a field writes into c.
func (c *Config) Options() *config.Table { return config.NewTable(c) }

// Validate checks every option and returns all problems joined, each naming
// its option (prefixed with server. or server.NAME. as in a config file).
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, config.KeyError(c.KeyPrefix()+key, format, args...))
	}
	unix := c.SocketFile != ""
	switch {
	case len(c.Listeners) > 0:
	case unix:
		if c.SocketFile == "@" {
			add("socket_file", "an abstract socket needs a name after @")
		}
		if len(c.SocketFile) > 107 {
			add("socket_file", "%q is longer than the 107 bytes a UNIX socket path may have; use a shorter path", c.SocketFile)
		}
		if c.SocketFileMode&^0o777 != 0 {
			add("socket_file_mode", "%04o has bits beyond 0777; use permission bits only, like 0660", c.SocketFileMode)
		}
		if strings.HasPrefix(c.SocketFile, "@") {
			c.validateAbstractAccess(add)
		}
	default:
		if strings.TrimSpace(c.SocketHost) == "" {
			add("socket_host", "empty; use an address (127.0.0.1, ::1), a host name, 0.0.0.0 or ::")
		} else if strings.ContainsAny(c.SocketHost, " /[]") && net.ParseIP(strings.Trim(c.SocketHost, "[]")) == nil {
			add("socket_host", "%q is not an address or host name", c.SocketHost)
		}
		if c.SocketPort < 0 || c.SocketPort > 65535 {
			add("socket_port", "%d is out of range; use 1-65535, or 0 for a free port", c.SocketPort)
		}
		if c.Peer.Peercreds {
			add("peercreds", "needs a UNIX socket (socket_file): TCP peers have no credentials to read")
		}
		if c.SocketFileOwner != "" || c.SocketFileGroup != "" {
			add("socket_file_owner", "applies only with socket_file")
		}
	}
	if c.ProxyProtocolAccept {
		if unix {
			add("proxy_protocol_accept", "applies to TCP listeners; socket_file is a UNIX socket")
		}
		if len(c.ProxyProtocolTrusted.List()) == 0 {
			add("proxy_protocol_trusted", "is empty, so proxy_protocol_accept would refuse every connection: list the load balancers' addresses or CIDR prefixes")
		}
		if c.ProxyProtocolTimeout <= 0 {
			add("proxy_protocol_timeout", "must be above 0 (seconds, or a duration like 5s)")
		}
	}
	if c.Core.H2C && c.TLS.SSLModule != "none" {
		// One server has one terminator: its listeners are all TLS or all
		// plain, so there is no mixed set-up for h2c to apply to.
		add("h2c", "applies to plain listeners (ssl_module none) only; ssl_module %s serves TLS, where ALPN chooses h2 already: remove h2c, or serve this listener with ssl_module none", c.TLS.SSLModule)
	}
	if c.SocketQueueSize < 1 || c.SocketQueueSize > 65535 {
		add("socket_queue_size", "%d is out of range; use 1-65535", c.SocketQueueSize)
	}
	if c.ShutdownTimeout <= 0 {
		add("shutdown_timeout", "must be above 0 (seconds, or a duration like 5s)")
	}
	if !c.Peer.Peercreds {
		for _, r := range c.Rule.Policy.Parsed() {
			if r.NeedsPeer() {
				add("policy", "rule %d (%s) names peer credentials, which need peercreds = True on a UNIX socket (socket_file)", r.Num, r.Text)
				break
			}
		}
	}
	for _, v := range []any{&c.Core, &c.TLS, &c.TLS.ACME, &c.Peer, &c.Apps, &c.Compress} {
		if v, ok := v.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				errs = append(errs, config.Prefix(err, c.KeyPrefix()))
			}
		}
	}
	return errors.Join(errs...)
}

// defaultSocketFileMode is socket_file_mode's default tag value.
const defaultSocketFileMode os.FileMode = 0o660

// validateAbstractAccess refuses the file-access options on an abstract
// socket. An abstract socket has no file, so no mode, owner or group: any
// local user may connect to it, and a mode meant to keep users out would be
// silently ignored. The option table cannot tell a mode written as 0660 from
// the default, so only a mode other than the default is refused; 0660 is what
// every abstract socket is taken to have asked for anyway (nothing).
func (c *Config) validateAbstractAccess(add func(key, format string, args ...any)) {
	const use = "an abstract socket (%s) has no file, so any local user may connect; " +
		"admit users with peercreds = True and peercreds_allow_uid, _gid, _user or _group instead, or use a socket path"
	if c.SocketFileMode != defaultSocketFileMode {
		add("socket_file_mode", "%04o cannot apply: "+use, c.SocketFileMode, c.SocketFile)
	}
	if c.SocketFileOwner != "" {
		add("socket_file_owner", "cannot apply: "+use, c.SocketFile)
	}
	if c.SocketFileGroup != "" {
		add("socket_file_group", "cannot apply: "+use, c.SocketFile)
	}
}

// KeyPrefix is how the server's options are written in a config file:
// "" for the main server's bare names in errors, "server.NAME." for an extra.
func (c *Config) KeyPrefix() string {
	if c.Name == "" {
		return ""
	}
	return "server." + c.Name + "."
}

// DefaultDataDir is tlsedge's per-user data directory: $XDG_DATA_HOME/tlsedge,
// or ~/.local/share/tlsedge.
func DefaultDataDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d + "/tlsedge", nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding a data directory: %w (set XDG_DATA_HOME or --data-dir)", err)
	}
	return home + "/.local/share/tlsedge", nil
}
