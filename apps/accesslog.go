package apps

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"tlsedge/conninfo"
	"tlsedge/policy"
)

// AccessLog writes one line per request to standard error or to a file, in
// one of three formats:
//
//   - combined: exactly Apache's and nginx's combined format, which every
//     log parser reads; nothing is appended.
//   - extended: combined, then the facts combined has no field for, as
//     key=value: the request id, the route (mount prefix), the duration, the
//     upstream, the TLS version, cipher and SNI, the peer's uid and pid.
//   - json: one object per line with all of the above.
//
// A file is opened for appending and reopened A file is opened for appending and reopened
// by Reopen, which the server calls on SIGUSR1 so logrotate can move it away.
// An AccessLog is safe for concurrent use.
type AccessLog struct {
	format string // "combined", "extended" or "json"
	path   string // "" for the stderr writer

	mu sync.Mutex
	w  io.Writer
	f  *os.File // the open file when path != ""
}

// NewAccessLog returns the access log opts ask for, or nil when access_log
// is empty (off). stderr is where "-" and "stderr" write.
func NewAccessLog(opts Options, stderr io.Writer) (*AccessLog, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	a := &AccessLog{format: cmp.Or(opts.AccessLogFormat, "combined")}
	switch opts.AccessLog {
	case "":
		return nil, nil
	case "-", "stderr":
		a.w = stderr
		return a, nil
	}
	a.path = opts.AccessLog
	f, err := openLog(a.path)
	if err != nil {
		return nil, err
	}
	a.f, a.w = f, f
	return a, nil
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("apps: access_log: %w", err)
	}
	return f, nil
}

// Reopen opens the log file afresh (after logrotate renamed it) and closes
// the old one. On failure it keeps writing to the old file and returns the
// error. It does nothing for standard error.
func (a *AccessLog) Reopen() error {
	if a == nil || a.path == "" {
		return nil
	}
	f, err := openLog(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.f
	a.f, a.w = f, f
	a.mu.Unlock()
	return old.Close()
}

// Close closes the log file.
func (a *AccessLog) Close() error {
	if a == nil || a.f == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}

// Wrap logs every request h serves. A nil AccessLog returns h unchanged, so
// the server can wrap unconditionally.
func (a *AccessLog) Wrap(h http.Handler) http.Handler {
	if a == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec, ok := w.(*recorder)
		if !ok {
			rec = &recorder{ResponseWriter: w}
		}
		defer func() {
			// Runs on a panic too (http.ErrAbortHandler from a proxy whose
			// upstream died), so aborted requests are logged as well.
			a.write(a.line(r, rec, start, time.Since(start)))
		}()
		h.ServeHTTP(rec, r)
	})
}

func (a *AccessLog) write(line []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.w.Write(line)
}

// entry is one request's line. Empty fields are left out of JSON and shown
// as "-" in the combined format.
type entry struct {
	Time       string  `json:"time"` // when the request started, RFC 3339 in UTC
	RequestID  string  `json:"request_id,omitempty"`
	RemoteAddr string  `json:"remote_addr"`
	User       string  `json:"user,omitempty"` // client identity: verified certificate CN, else peer user
	Method     string  `json:"method"`
	URI        string  `json:"uri"`
	Proto      string  `json:"proto"`
	Host       string  `json:"host,omitempty"`
	Status     int     `json:"status"`
	Bytes      int64   `json:"bytes"`
	Duration   float64 `json:"duration"`        // seconds
	Route      string  `json:"route,omitempty"` // the mount prefix that served it
	Upstream   string  `json:"upstream,omitempty"`
	Referer    string  `json:"referer,omitempty"`
	UserAgent  string  `json:"user_agent,omitempty"`
	TLSVersion string  `json:"tls_version,omitempty"`
	TLSCipher  string  `json:"tls_cipher,omitempty"`
	SNI        string  `json:"sni,omitempty"`
	PeerUID    *uint32 `json:"peer_uid,omitempty"`
	PeerPID    int32   `json:"peer_pid,omitempty"`
	Policy     string  `json:"policy,omitempty"`      // server.policy decision: allow or deny
	PolicyRule *int    `json:"policy_rule,omitempty"` // its rule's number, 0 for the default deny
}

func (a *AccessLog) line(r *http.Request, rec *recorder, start time.Time, d time.Duration) []byte {
	e := entry{
		RequestID:  RequestID(r),
		Route:      rec.route,
		Upstream:   rec.upstream,
		Policy:     rec.policy,
		RemoteAddr: remoteHost(r),
		Method:     r.Method,
		URI:        r.RequestURI,
		Proto:      r.Proto,
		Host:       r.Host,
		Status:     rec.finalStatus(),
		Bytes:      rec.bytes,
		Duration:   d.Seconds(),
		Referer:    r.Referer(),
		UserAgent:  r.UserAgent(),
	}
	cs := r.TLS
	ci, _ := conninfo.FromContext(r.Context())
	if ci != nil && cs == nil {
		cs = ci.TLS
	}
	if cs != nil {
		// mod_ssl's spellings, as in the X-SSL-* headers and nginx logs.
		e.TLSVersion = policy.ProtocolName(cs.Version)
		e.TLSCipher = policy.CipherName(cs.CipherSuite)
		e.SNI = cs.ServerName
		if len(cs.VerifiedChains) > 0 && len(cs.PeerCertificates) > 0 {
			e.User = cs.PeerCertificates[0].Subject.CommonName
		}
	}
	if ci != nil && ci.Peer != nil {
		uid := ci.Peer.UID
		e.PeerUID, e.PeerPID = &uid, ci.Peer.PID
		if e.User == "" {
			e.User = ci.Peer.User
		}
	}
	if rec.policy != "" {
		n := rec.policyRule
		e.PolicyRule = &n
	}
	if a.format == "json" {
		e.Time = start.UTC().Format(time.RFC3339Nano)
		b, _ := json.Marshal(e)
		return append(b, '\n')
	}
	// Apache/nginx "combined", to the byte:
	// %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"
	var b strings.Builder
	b.WriteString(orDash(e.RemoteAddr))
	b.WriteString(" - ")
	b.WriteString(orDash(escapeLog(e.User)))
	b.WriteString(start.Format(" [02/Jan/2006:15:04:05 -0700] \""))
	b.WriteString(escapeLog(e.Method + " " + e.URI + " " + e.Proto))
	fmt.Fprintf(&b, "\" %d %d \"%s\" \"%s\"", e.Status, e.Bytes, orDash(escapeLog(e.Referer)), orDash(escapeLog(e.UserAgent)))
	if a.format == "extended" {
		// After the nine combined fields, so a combined parser that allows
		// trailing fields still reads the line.
		fmt.Fprintf(&b, " rid=%s route=%s dur=%.6f", orDash(escapeLog(e.RequestID)), orDash(escapeLog(e.Route)), e.Duration)
		if e.Upstream != "" {
			fmt.Fprintf(&b, " upstream=%s", escapeLog(e.Upstream))
		}
		if e.TLSVersion != "" {
			fmt.Fprintf(&b, " tls=%s cipher=%s sni=%s", e.TLSVersion, e.TLSCipher, orDash(escapeLog(e.SNI)))
		}
		if e.PeerUID != nil {
			fmt.Fprintf(&b, " uid=%d pid=%d", *e.PeerUID, e.PeerPID)
		}
		if e.Policy != "" {
			fmt.Fprintf(&b, " policy=%s/%d", e.Policy, *e.PolicyRule)
		}
	}
	b.WriteByte('\n')
	return []byte(b.String())
}

// remoteHost is the client's IP, or "unix" for a UNIX-socket peer.
func remoteHost(r *http.Request) string {
	if ci, ok := conninfo.FromContext(r.Context()); ok && ci.Transport == "unix" {
		return "unix"
	}
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// escapeLog writes quotes, backslashes, control bytes and non-ASCII as \xHH
// like nginx, so a client cannot forge a line or break a field.
func escapeLog(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			fmt.Fprintf(&b, "\\x%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
