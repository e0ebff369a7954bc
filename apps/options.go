package apps

import (
	"errors"
	"fmt"
	"time"
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
	TrustedProxies []string `opt:"trusted_proxies" default:"" group:"Apps" help:"peers (IP, CIDR or unix) whose X-Forwarded-* and Forwarded headers are kept"`

	// DirListing lets dir: mounts list directories that have no index.html.
	// False answers 403 instead.
	DirListing bool `opt:"dir_listing" default:"false" group:"Apps" help:"list directories without index.html on dir: mounts"`

	// DirFollowSymlinks lets dir: mounts follow symlinks that lead outside the
	// mount's root. False refuses them (404); symlinks inside the root always work.
	DirFollowSymlinks bool `opt:"dir_follow_symlinks" default:"false" group:"Apps" help:"follow symlinks that leave a dir: mount's root"`

	// ProxyConnectTimeout bounds dialing an upstream (and its TLS handshake);
	// running out answers 504, a refused connection 502. Zero means 5s.
	ProxyConnectTimeout time.Duration `opt:"proxy_connect_timeout" default:"5s" group:"Apps" help:"longest wait to connect to an upstream (then 504)"`

	// ProxyResponseTimeout bounds the wait for an upstream's response head once
	// the request is sent; the body then streams without a limit. Zero means 60s.
	ProxyResponseTimeout time.Duration `opt:"proxy_response_timeout" default:"60s" group:"Apps" help:"longest wait for an upstream's response head (then 504)"`

	// ProxyProtocol sends a PROXY protocol v2 header carrying the client's
	// address first on every upstream connection. A header speaks for a
	// connection's whole life, so upstream connections are then pooled per
	// client address and port: reused only for requests whose header would
	// be the same.
	ProxyProtocol bool `opt:"proxy_protocol" default:"false" group:"Apps" help:"send a PROXY protocol v2 header to upstreams (upstream connections then pooled per client)"`

	// AccessLog is where the access log goes: empty for off, "-" or "stderr"
	// for standard error, otherwise a file path opened for appending and
	// reopened by AccessLog.Reopen (SIGUSR1, for logrotate).
	AccessLog string `opt:"access_log" default:"" group:"Apps" help:"access log: empty (off), - (stderr) or a file path (reopened on SIGUSR1)"`

	// AccessLogFormat is "combined" (Apache/nginx combined plus TLS fields) or
	// "json" (one object per line). Empty means combined.
	AccessLogFormat string `opt:"access_log_format" default:"combined" group:"Apps" help:"access log line format: combined or json"`
}

// Defaults for zero-valued Options, in one place.
const (
	defaultConnectTimeout  = 5 * time.Second
	defaultResponseTimeout = 60 * time.Second
)

func (o *Options) connectTimeout() time.Duration {
	if o.ProxyConnectTimeout > 0 {
		return o.ProxyConnectTimeout
	}
	return defaultConnectTimeout
}

func (o *Options) responseTimeout() time.Duration {
	if o.ProxyResponseTimeout > 0 {
		return o.ProxyResponseTimeout
	}
	return defaultResponseTimeout
}

// Validate reports every problem in o, each naming its config key.
func (o *Options) Validate() error {
	var errs []error
	if _, err := policy.ParseTrust(o.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrBadOption, err))
	}
	if o.ProxyConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: proxy_connect_timeout: %v is negative", ErrBadOption, o.ProxyConnectTimeout))
	}
	if o.ProxyResponseTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: proxy_response_timeout: %v is negative", ErrBadOption, o.ProxyResponseTimeout))
	}
	switch o.AccessLogFormat {
	case "", "combined", "json":
	default:
		errs = append(errs, fmt.Errorf("%w: access_log_format: %q is not combined or json", ErrBadOption, o.AccessLogFormat))
	}
	return errors.Join(errs...)
}
