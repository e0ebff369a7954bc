// Package appopt holds the user-facing options of what a mount serves
// (proxy, static files, access log). They live apart from package apps so
// that the server can carry them in its configuration, and parse them with
// every other option, without linking the apps themselves.
package appopt

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"tlsedge/config"
	"tlsedge/policy"
)

// Options are the user-facing settings of what a mount serves. Each tagged
// field becomes a flag (--kebab-name), a config key (server.snake_name) and a
// README row. The zero value works: each field's doc says what zero means.
type Options struct {
	// TrustedProxies lists the peers whose X-Forwarded-For/-Proto/-Host and
	// Forwarded headers the proxy keeps (appending the peer) instead of
	// replacing: IP addresses, CIDR prefixes, or "unix" for any peer on a UNIX
	// socket. Empty trusts no one: the list fails closed.
	TrustedProxies policy.TrustedProxies `opt:"trusted_proxies" default:"" group:"Apps" help:"peers (IP, CIDR or unix) whose X-Forwarded-* and Forwarded headers are kept"`

	// DirListing lets dir: mounts list directories that have no index.html.
	// False answers 403 instead.
	DirListing bool `opt:"dir_listing" default:"false" group:"Apps" help:"list directories without index.html on dir: mounts"`

	// DirFollowSymlinks lets dir: mounts follow symlinks that lead outside the
	// mount's root. False refuses them (404); symlinks inside the root always work.
	DirFollowSymlinks bool `opt:"dir_follow_symlinks" default:"false" group:"Apps" help:"follow symlinks that leave a dir: mount's root"`

	// MaxRanges is the most range-specs a Range header on a dir: mount may
	// hold; a request with more gets the whole file (200), or 416 if none of
	// them is satisfiable, as nginx's max_ranges. Overlapping and adjacent
	// ranges are merged whatever the limit, and a multipart answer is never
	// more than 1 KiB larger than the file. Zero means 16.
	MaxRanges int `opt:"max_ranges" default:"16" group:"Apps" help:"most byte ranges one request to a dir: mount may ask for; more get the whole file"`

	// ProxyConnectTimeout bounds dialing an upstream (and its TLS handshake);
	// running out answers 504, a refused connection 502. Zero means 5s.
	ProxyConnectTimeout time.Duration `opt:"proxy_connect_timeout" default:"5s" group:"Apps" help:"longest wait to connect to an upstream (then 504)"`

	// ProxyResponseTimeout bounds the wait for an upstream's response head once
	// the request is sent; the body then streams without a limit. Zero means 60s.
	ProxyResponseTimeout time.Duration `opt:"proxy_response_timeout" default:"60s" group:"Apps" help:"longest wait for an upstream's response head (then 504)"`

	// ProxyRequestBuffering makes the proxy read a request's whole body,
	// and the core check its framing and size, before the upstream is
	// contacted; the body then goes up with a Content-Length. A body the core
	// refuses (400, 408, 413) never reaches the upstream, nor does a
	// connection for it. Off, bodies stream as they arrive, and an upstream
	// may see the start of a body that later turns out bad. The zero
	// Options has it off; the configuration's default is on.
	ProxyRequestBuffering bool `opt:"proxy_request_buffering" default:"true" group:"Apps" help:"read and check a request's whole body before contacting the upstream (off: stream it)"`

	// ProxyRequestBufferSize is how much of a buffered request body is held
	// in memory; a larger body goes to a temporary file under
	// ProxyTempPath. Zero means 64 KiB.
	ProxyRequestBufferSize int64 `opt:"proxy_request_buffer_size" default:"64KiB" unit:"bytes" group:"Apps" help:"buffered request body held in memory; more goes to a temporary file"`

	// ProxyTempPath is the directory under which buffered request bodies
	// larger than ProxyRequestBufferSize are written, each in a private
	// (0700) directory of its own, as a 0600 file unlinked at once. Empty
	// means the system's temporary directory ($TMPDIR or /tmp).
	ProxyTempPath string `opt:"proxy_temp_path" default:"" group:"Apps" help:"directory for request bodies buffered on disk (empty: $TMPDIR or /tmp)"`

	// ProxyProtocol sends a PROXY protocol v2 header carrying the client's
	// address first on every upstream connection. A header speaks for a
	// connection's whole life, so upstream connections are then pooled per
	// client address and port: reused only for requests whose header would
	// be the same.
	ProxyProtocol bool `opt:"proxy_protocol" default:"false" group:"Apps" help:"send a PROXY protocol v2 header to upstreams (upstream connections then pooled per client)"`

	// ProxyProtocolTLV adds to that header what the edge verified about the
	// client as TLVs (haproxy's PP2_TYPE_SSL, AUTHORITY and ALPN, and
	// tlsedge's own 0xE0-0xE3 for the SPIFFE ID and the UNIX peer's uid, gid
	// and pid), so an upstream can trust them without trusting headers.
	ProxyProtocolTLV bool `opt:"proxy_protocol_tlv" default:"false" group:"Apps" help:"add TLVs to the PROXY v2 header: TLS version, cipher, SNI, ALPN, the verified client certificate's CN and SPIFFE ID, the UNIX peer's uid, gid and pid (needs proxy_protocol)"`

	// ProxyMaxFails is how many failures (connection refused, reset or
	// closed before an answer, timed out) within ProxyFailTimeout mark an
	// upstream down, as nginx's max_fails: while down, requests to it are
	// answered at once (502, or 504 when it last timed out) without trying
	// it, for ProxyFailTimeout. Zero never marks an upstream down; the
	// zero Options has it so, the configuration's default is 1.
	ProxyMaxFails int `opt:"proxy_max_fails" default:"1" group:"Apps" help:"failures (refused, reset, timed out) within proxy_fail_timeout that mark an upstream down (0: never)"`

	// ProxyFailTimeout is both the window in which ProxyMaxFails failures
	// count and how long an upstream then stays down, as nginx's
	// fail_timeout. Zero means 10s.
	ProxyFailTimeout time.Duration `opt:"proxy_fail_timeout" default:"10s" group:"Apps" help:"window for proxy_max_fails and how long an upstream stays down"`

	// ProxyKeepalive is how many idle keep-alive connections to one
	// upstream are kept for reuse, as nginx's keepalive. Zero means 128.
	ProxyKeepalive int `opt:"proxy_keepalive" default:"128" group:"Apps" help:"idle keep-alive connections kept per upstream"`

	// ProxyKeepaliveTimeout closes an upstream connection idle that long.
	// Zero means 60s.
	ProxyKeepaliveTimeout time.Duration `opt:"proxy_keepalive_timeout" default:"60s" group:"Apps" help:"close an idle upstream connection after this long"`

	// ProxyKeepaliveRequests is how many requests one upstream connection
	// carries before it is closed, as nginx's keepalive_requests. Zero
	// means 1000.
	ProxyKeepaliveRequests int `opt:"proxy_keepalive_requests" default:"1000" group:"Apps" help:"requests one upstream connection carries before it is closed"`

	// ProxySSLTrustedCertificate is a PEM file of the CA certificates that
	// verify https:// upstreams, as nginx's proxy_ssl_trusted_certificate.
	// Empty means the system's roots. It replaces them rather than adding to
	// them: an upstream on a private CA should not also be reachable through
	// a public one.
	ProxySSLTrustedCertificate string `opt:"proxy_ssl_trusted_certificate" default:"" group:"Apps" help:"PEM file of the CA certificates that verify https:// upstreams (empty: the system roots)"`

	// ProxySSLCertificate and ProxySSLCertificateKey are the PEM client
	// certificate (leaf first, then any intermediates) and its unencrypted
	// key that the proxy presents to https:// upstreams asking for one
	// (mutual TLS, as ghostunnel's client mode). Both or neither.
	ProxySSLCertificate    string `opt:"proxy_ssl_certificate" default:"" group:"Apps" help:"PEM client certificate presented to https:// upstreams (needs proxy_ssl_certificate_key)"`
	ProxySSLCertificateKey string `opt:"proxy_ssl_certificate_key" default:"" group:"Apps" help:"PEM private key of proxy_ssl_certificate"`

	// ProxySSLServerName is the name sent as SNI to https:// upstreams and
	// verified against their certificates, for an upstream dialled by
	// address whose certificate names a service. (nginx splits this into
	// proxy_ssl_name and the switch proxy_ssl_server_name; here the name is
	// always sent, unless it is an IP address, which TLS cannot carry as
	// SNI.) Empty means the upstream URL's host.
	ProxySSLServerName string `opt:"proxy_ssl_server_name" default:"" group:"Apps" help:"SNI and verified name for https:// upstreams (empty: the upstream URL's host)"`

	// ProxySSLVerify checks https:// upstreams' certificates against
	// ProxySSLTrustedCertificate (or the system roots) and
	// ProxySSLServerName. Off accepts any certificate, a man in the middle's
	// too: it must be set explicitly, and every https:// mount logs a
	// warning at start. Its zero value is on.
	ProxySSLVerify OnSwitch `opt:"proxy_ssl_verify" default:"true" group:"Apps" help:"verify https:// upstreams' certificates (off: accept any, logged as a warning at start)"`

	// ProxyLB chooses the upstream of a mount that names several (a pool):
	// round_robin (smooth weighted, as nginx's), least_conn (fewest
	// requests in flight per unit of weight), random_two (the less busy of
	// two choices: the round robin's next and one drawn at random by
	// weight), ip_hash (the client's address),
	// header:NAME (a request field's value; round_robin without it) or
	// cookie:NAME (sticky: the first answer sets a signed cookie naming its
	// upstream, later requests go back to it while it is up). ip_hash and
	// header: use rendezvous hashing, so an upstream going down moves only
	// its own clients. Empty means round_robin.
	ProxyLB string `opt:"proxy_lb" default:"round_robin" group:"Apps" help:"how a pool's upstream is chosen: round_robin, least_conn, random_two, ip_hash, header:NAME or cookie:NAME (sticky, signed)"`

	// ProxyLBCookieKeyFile holds the secret that signs cookie:NAME sticky
	// cookies (any bytes, at least 16). Nodes behind one address share it
	// so that a cookie one signed is honoured by all. Empty means a random
	// key made at start: cookies then stick only to this process.
	ProxyLBCookieKeyFile string `opt:"proxy_lb_cookie_key_file" default:"" group:"Apps" help:"file holding the key (16+ bytes) that signs proxy_lb cookie:NAME cookies (empty: random at start)"`

	// ProxyHealthURI turns on active health checks of every upstream of a
	// pool: a GET of this path every ProxyHealthInterval. Empty leaves
	// only the passive checks (proxy_max_fails).
	ProxyHealthURI string `opt:"proxy_health_uri" default:"" group:"Apps" help:"path each pool upstream is checked at with a GET (empty: passive checks only)"`

	// ProxyHealthInterval is the time between two checks of an upstream.
	// Zero means 5s.
	ProxyHealthInterval time.Duration `opt:"proxy_health_interval" default:"5s" group:"Apps" help:"time between two active health checks of an upstream"`

	// ProxyHealthTimeout bounds one check, connection included; running
	// out is a failed check. Zero means 2s.
	ProxyHealthTimeout time.Duration `opt:"proxy_health_timeout" default:"2s" group:"Apps" help:"longest wait for an active health check's answer (then it failed)"`

	// ProxyHealthStatus is the statuses a passing check answers: codes and
	// classes separated by spaces or commas ("200", "2xx 3xx", "200,204").
	// Empty means 2xx.
	ProxyHealthStatus string `opt:"proxy_health_status" default:"2xx" group:"Apps" help:"statuses a passing health check answers: codes or classes (200, 2xx 3xx)"`

	// ProxyHealthRise is how many checks in a row must pass to put a down
	// upstream back in rotation; ProxyHealthFall how many must fail to
	// take it out. Zero means 2 for both.
	ProxyHealthRise int `opt:"proxy_health_rise" default:"2" group:"Apps" help:"passing health checks in a row that put a down upstream back"`
	ProxyHealthFall int `opt:"proxy_health_fall" default:"2" group:"Apps" help:"failing health checks in a row that take an upstream out"`

	// AccessLog is where the access log goes: empty for off, "-" or "stderr"
	// for standard error, otherwise a file path opened for appending and
	// reopened by AccessLog.Reopen (SIGUSR1, for logrotate).
	AccessLog string `opt:"access_log" default:"" group:"Apps" help:"access log: empty (off), - (stderr) or a file path (reopened on SIGUSR1)"`

	// AccessLogFormat is "combined" (exactly Apache's and nginx's combined
	// format), "extended" (combined, then request id, route, duration,
	// upstream, TLS and peer fields as key=value) or "json" (one object per
	// line, every field). Empty means combined.
	AccessLogFormat string `opt:"access_log_format" default:"combined" group:"Apps" help:"access log line format: combined (standard), extended (combined + request id, route, duration, TLS, peer) or json"`
}

// defaults are the tags' defaults, the fallbacks for zero-valued Options.
var defaults = config.Defaults[Options]()

// BufferSize is proxy_request_buffer_size, or its default when zero.
func (o *Options) BufferSize() int64 {
	return positiveOr(o.ProxyRequestBufferSize, defaults.ProxyRequestBufferSize)
}

// TempPath is proxy_temp_path, or the system temporary directory.
func (o *Options) TempPath() string {
	if o.ProxyTempPath != "" {
		return o.ProxyTempPath
	}
	return os.TempDir()
}

// RangesLimit is max_ranges, or its default when zero.
func (o *Options) RangesLimit() int { return positiveOr(o.MaxRanges, defaults.MaxRanges) }

// ConnectTimeout is proxy_connect_timeout, or its default when zero.
func (o *Options) ConnectTimeout() time.Duration {
	return positiveOr(o.ProxyConnectTimeout, defaults.ProxyConnectTimeout)
}

// ResponseTimeout is proxy_response_timeout, or its default when zero.
func (o *Options) ResponseTimeout() time.Duration {
	return positiveOr(o.ProxyResponseTimeout, defaults.ProxyResponseTimeout)
}

// FailTimeout is proxy_fail_timeout, or its default when zero.
func (o *Options) FailTimeout() time.Duration {
	return positiveOr(o.ProxyFailTimeout, defaults.ProxyFailTimeout)
}

// Keepalive is proxy_keepalive, or its default when zero.
func (o *Options) Keepalive() int { return positiveOr(o.ProxyKeepalive, defaults.ProxyKeepalive) }

// KeepaliveTimeout is proxy_keepalive_timeout, or its default when zero.
func (o *Options) KeepaliveTimeout() time.Duration {
	return positiveOr(o.ProxyKeepaliveTimeout, defaults.ProxyKeepaliveTimeout)
}

// KeepaliveRequests is proxy_keepalive_requests, or its default when zero.
func (o *Options) KeepaliveRequests() int {
	return positiveOr(o.ProxyKeepaliveRequests, defaults.ProxyKeepaliveRequests)
}

// HealthInterval is proxy_health_interval, or its default when zero.
func (o *Options) HealthInterval() time.Duration {
	return positiveOr(o.ProxyHealthInterval, defaults.ProxyHealthInterval)
}

// HealthTimeout is proxy_health_timeout, or its default when zero.
func (o *Options) HealthTimeout() time.Duration {
	return positiveOr(o.ProxyHealthTimeout, defaults.ProxyHealthTimeout)
}

// HealthRise is proxy_health_rise, or its default when zero.
func (o *Options) HealthRise() int { return positiveOr(o.ProxyHealthRise, defaults.ProxyHealthRise) }

// HealthFall is proxy_health_fall, or its default when zero.
func (o *Options) HealthFall() int { return positiveOr(o.ProxyHealthFall, defaults.ProxyHealthFall) }

// Validate reports every problem in o, each naming its config key.
func (o *Options) Validate() error {
	var errs []error
	if o.ProxyProtocolTLV && !o.ProxyProtocol {
		errs = append(errs, bad("proxy_protocol_tlv", "needs proxy_protocol = True: the TLVs travel in its header"))
	}
	if o.MaxRanges < 0 {
		errs = append(errs, bad("max_ranges", "%d is negative (0 means %d)", o.MaxRanges, defaults.MaxRanges))
	}
	if o.ProxyConnectTimeout < 0 {
		errs = append(errs, bad("proxy_connect_timeout", "%v is negative", o.ProxyConnectTimeout))
	}
	if o.ProxyResponseTimeout < 0 {
		errs = append(errs, bad("proxy_response_timeout", "%v is negative", o.ProxyResponseTimeout))
	}
	if o.ProxyRequestBufferSize < 0 {
		errs = append(errs, bad("proxy_request_buffer_size", "%d is negative", o.ProxyRequestBufferSize))
	}
	for _, kv := range []struct {
		key string
		v   int64
	}{
		{"proxy_max_fails", int64(o.ProxyMaxFails)}, {"proxy_fail_timeout", int64(o.ProxyFailTimeout)},
		{"proxy_keepalive", int64(o.ProxyKeepalive)}, {"proxy_keepalive_timeout", int64(o.ProxyKeepaliveTimeout)},
		{"proxy_keepalive_requests", int64(o.ProxyKeepaliveRequests)},
	} {
		if kv.v < 0 {
			errs = append(errs, bad(kv.key, "%d is negative", kv.v))
		}
	}
	if o.ProxyTempPath != "" && !filepath.IsAbs(o.ProxyTempPath) {
		errs = append(errs, bad("proxy_temp_path", "%q is not an absolute path", o.ProxyTempPath))
	}
	if (o.ProxySSLCertificate == "") != (o.ProxySSLCertificateKey == "") {
		key, missing := "proxy_ssl_certificate", "proxy_ssl_certificate_key"
		if o.ProxySSLCertificate == "" {
			key, missing = missing, key
		}
		errs = append(errs, bad(key, "is set without %s: set both (a client certificate and its key) or neither", missing))
	}
	if n := o.ProxySSLServerName; n != "" && !validServerName(n) {
		errs = append(errs, bad("proxy_ssl_server_name", "%q is not a host name or IP address", n))
	}
	if _, _, err := ParseLB(o.ProxyLB); err != nil {
		errs = append(errs, bad("proxy_lb", "%v", err))
	}
	if u := o.ProxyHealthURI; u != "" && (u[0] != '/' || !validRequestTarget(u)) {
		errs = append(errs, bad("proxy_health_uri", "%q is not a path: start it with / and leave out spaces and control characters", u))
	}
	if _, err := ParseStatusSet(o.ProxyHealthStatus); err != nil {
		errs = append(errs, bad("proxy_health_status", "%v", err))
	}
	for _, kv := range []struct {
		key string
		v   int64
	}{
		{"proxy_health_interval", int64(o.ProxyHealthInterval)}, {"proxy_health_timeout", int64(o.ProxyHealthTimeout)},
		{"proxy_health_rise", int64(o.ProxyHealthRise)}, {"proxy_health_fall", int64(o.ProxyHealthFall)},
	} {
		if kv.v < 0 {
			errs = append(errs, bad(kv.key, "%d is negative", kv.v))
		}
	}
	if o.ProxyHealthURI != "" && o.HealthTimeout() > o.HealthInterval() {
		errs = append(errs, bad("proxy_health_timeout", "%v is longer than proxy_health_interval %v: a check would still run when the next is due", o.HealthTimeout(), o.HealthInterval()))
	}
	switch o.AccessLogFormat {
	case "", "combined", "extended", "json":
	default:
		errs = append(errs, bad("access_log_format", "%q is not combined, extended or json", o.AccessLogFormat))
	}
	return errors.Join(errs...)
}

// ErrBadOption reports an Options field that fails Validate; it is a
// config.ErrBadValue too.
var ErrBadOption = fmt.Errorf("apps: %w", config.ErrBadValue)

// bad is a bad value for key, located by the loader like any other.
func bad(key, format string, args ...any) error {
	return &config.Error{Key: key, Msg: fmt.Sprintf(format, args...), Err: ErrBadOption}
}

// positiveOr is v, or def when v is zero (or negative): the zero value of an
// option built in Go means its default.
func positiveOr[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// validServerName reports whether n can be an upstream's TLS name: an IP
// address, or a DNS name of letters, digits, hyphens, underscores and dots.
func validServerName(n string) bool {
	if _, err := netip.ParseAddr(n); err == nil {
		return true
	}
	if len(n) > 253 {
		return false
	}
	for _, c := range []byte(n) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return n[0] != '.' && n[0] != '-'
}

// OnSwitch is a switch whose zero value is on: for a check that Options
// built in Go, rather than loaded with the tags' defaults, must not lose by
// leaving the field out. Only an explicit false (Off) turns it off. It takes
// the same values as any other switch.
type OnSwitch uint8

const (
	// On is the zero OnSwitch.
	On OnSwitch = iota
	// Off is the explicit choice.
	Off
)

// IsOn reports whether the switch is on.
func (s OnSwitch) IsOn() bool { return s != Off }

// IsBoolFlag makes the option a switch on the command line and in the
// configuration file, like a bool.
func (OnSwitch) IsBoolFlag() bool { return true }

// UnmarshalText accepts what strconv.ParseBool does.
func (s *OnSwitch) UnmarshalText(b []byte) error {
	v, err := strconv.ParseBool(string(b))
	if err != nil {
		return fmt.Errorf("%q is not true or false", b)
	}
	*s = On
	if !v {
		*s = Off
	}
	return nil
}

// MarshalText gives "true" or "false".
func (s OnSwitch) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatBool(s.IsOn())), nil
}
