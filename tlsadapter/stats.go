package tlsadapter

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tlsedge/policy"
)

// Failure reasons, as counted in TLSStats.Failures and logged.
const (
	ReasonPlaintext          = "plaintext"           // plain HTTP on the TLS port (answered)
	ReasonNotTLS             = "not_tls"             // neither TLS nor HTTP
	ReasonSSLv2              = "sslv2"               // SSLv2-style hello
	ReasonUnsupportedVersion = "unsupported_version" // no shared protocol version
	ReasonNoSharedCipher     = "no_shared_cipher"    // no shared suite or group
	ReasonUnknownSNI         = "unknown_sni"         // with ssl_reject_unknown_sni
	ReasonBadSNI             = "bad_sni"             // SNI that is not a host name
	ReasonNoClientCert       = "no_client_cert"      // required but absent
	ReasonBadClientCert      = "bad_client_cert"     // did not verify
	ReasonPolicyDenied       = "policy_denied"       // refused by ssl_client_allow
	ReasonTimeout            = "timeout"             // handshake timeout or shutdown
	ReasonEOF                = "eof"                 // client went away
	ReasonOther              = "other"
)

// reasons orders the counters; numReasons must match its length.
const numReasons = 13

var reasons = [numReasons]string{
	ReasonPlaintext, ReasonNotTLS, ReasonSSLv2, ReasonUnsupportedVersion, ReasonNoSharedCipher,
	ReasonUnknownSNI, ReasonBadSNI, ReasonNoClientCert, ReasonBadClientCert, ReasonPolicyDenied,
	ReasonTimeout, ReasonEOF, ReasonOther,
}

// TLSStats is a snapshot of an adapter's counters.
type TLSStats struct {
	Handshakes     uint64            // completed handshakes
	Resumed        uint64            // of which resumed sessions
	Failures       map[string]uint64 // failed or refused connections by reason (every reason present)
	Plaintext      uint64            // plain HTTP requests answered on the TLS port (also Failures["plaintext"])
	Reloads        uint64            // successful certificate reloads
	ReloadFailures uint64            // reloads that kept the old certificates
	Versions       map[string]uint64 // completed handshakes by protocol ("TLSv1.3")
}

// StatsReporter is implemented by adapters that keep TLS statistics; the
// status page shows them.
type StatsReporter interface {
	TLSStats() TLSStats
}

// counters are the live atomics behind TLSStats.
type counters struct {
	handshakes, resumed     atomic.Uint64
	reloads, reloadFailures atomic.Uint64
	failures                [numReasons]atomic.Uint64 // indexed like reasons
	tls12, tls13, tlsOld    atomic.Uint64
}

func (c *counters) fail(reason string) {
	for i, r := range reasons {
		if r == reason {
			c.failures[i].Add(1)
			return
		}
	}
	c.failures[len(reasons)-1].Add(1)
}

func (c *counters) snapshot() TLSStats {
	s := TLSStats{
		Handshakes: c.handshakes.Load(), Resumed: c.resumed.Load(),
		Reloads: c.reloads.Load(), ReloadFailures: c.reloadFailures.Load(),
		Failures: make(map[string]uint64, len(reasons)),
		Versions: map[string]uint64{"TLSv1.3": c.tls13.Load(), "TLSv1.2": c.tls12.Load(), "older": c.tlsOld.Load()},
	}
	for i, r := range reasons {
		s.Failures[r] = c.failures[i].Load()
	}
	s.Plaintext = s.Failures[ReasonPlaintext]
	return s
}

// classifyError maps a handshake error onto a reason. crypto/tls keeps most
// of its errors unexported, so the last resort is their stable text.
func classifyError(ctx context.Context, err error) string {
	var deny *policy.DenyError
	var ne net.Error
	switch {
	case errors.As(err, &deny):
		return ReasonPolicyDenied
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), ctx.Err() != nil,
		errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return ReasonEOF
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "protocol version"):
		return ReasonUnsupportedVersion
	case strings.Contains(msg, "no cipher suite"), strings.Contains(msg, "no ECDHE curve"),
		strings.Contains(msg, "no mutually supported"), strings.Contains(msg, "key share"), strings.Contains(msg, "no key exchanges"):
		return ReasonNoSharedCipher
	case strings.Contains(msg, "didn't provide a certificate"):
		return ReasonNoClientCert
	case strings.Contains(msg, "failed to verify"), strings.Contains(msg, "x509:"), strings.Contains(msg, "client certificate"):
		return ReasonBadClientCert
	case strings.Contains(msg, "no certificates configured"):
		return ReasonUnknownSNI
	case strings.Contains(msg, "does not look like a TLS handshake"):
		return ReasonNotTLS
	}
	return ReasonOther
}

// rateLog passes at most burst lines per second to the logger and counts
// the rest, so a scan or a flood cannot fill the disk.
type rateLog struct {
	log        *slog.Logger
	burst      int
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed int
}

func (r *rateLog) log1(ctx context.Context, level slog.Level, msg string, args ...any) {
	if !r.log.Enabled(ctx, level) {
		return
	}
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.window) >= time.Second {
		r.window, r.n = now, 0
	}
	r.n++
	if r.n > r.burst {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	if r.suppressed > 0 {
		args = append(args, "suppressed", r.suppressed)
		r.suppressed = 0
	}
	r.mu.Unlock()
	r.log.Log(ctx, level, msg, args...)
}

// CertInfo describes one certificate an adapter serves, for the status page
// and metrics (days left before expiry).
type CertInfo struct {
	Name     string    // the first DNS name or IP of the leaf, else its CN
	Source   string    // "file", "internal" or "acme"
	NotAfter time.Time // the leaf's expiry
}

// CertificateLister is implemented by adapters that can list the
// certificates they serve now.
type CertificateLister interface {
	Certificates() []CertInfo
}

// leafName names a certificate by what it is served for.
func leafName(c *x509.Certificate) string {
	switch {
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return c.Subject.CommonName
}
