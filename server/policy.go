package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"

	"tlsedge/accept"
	"tlsedge/conninfo"
	"tlsedge/policy"
)

// This file runs server.policy at the three moments its facts become known:
// at accept (source address, peer credentials and executable), after the
// handshake (SNI, client certificate) and for each request (host, method,
// path). The first two close a connection that a rule already denies; the
// last answers 403. Every connection and request passes here, whatever its
// listener or mount.

// connFacts are the facts known at accept.
func connFacts(info *conninfo.Info) *policy.Facts {
	f := &policy.Facts{Peer: info.Peer, Exe: info.PeerExe}
	if info.Transport != "unix" {
		f.Src = addrIP(info.RemoteAddr)
	}
	f.SetTLS(info.TLS)
	return f
}

func addrIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// peerExe reads the executable of the peer process from /proc. It is read
// once, at accept, like the credentials: a process that execs another
// program later keeps the name it connected with.
func peerExe(pid int32) string {
	if pid <= 0 {
		return ""
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(int(pid)) + "/exe")
	if err != nil {
		return ""
	}
	return exe
}

// admitConn judges a connection at stage s (accept or handshake) and reports
// whether it may go on. A rule that denies it now is counted and logged; a
// final allow is recorded in info.Policy.
func (g *gen) admitConn(log *slog.Logger, info *conninfo.Info, s policy.Stage) bool {
	if g.policy == nil {
		return true
	}
	d := g.policy.Judge(connFacts(info), s)
	if !d.Final {
		return true
	}
	if d.Action == policy.Deny {
		g.policy.Count(d)
		log.Info("connection denied by policy", "stage", s.String(), "rule", d.Rule, "text", d.Text,
			"remote_addr", addrString(info.RemoteAddr), "peer", info.Peer)
		return false
	}
	info.Policy = decisionText(d)
	return true
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func decisionText(d policy.Decision) string {
	if d.Rule == 0 {
		return d.Action.String() + " (default)"
	}
	return fmt.Sprintf("%s rule %d", d.Action, d.Rule)
}

// revokes reports whether g's policy refuses a live connection on its
// connection-level facts alone (peer allow-lists, server.policy at the
// handshake stage): after a reload, such a connection is closed after its
// current request.
func (g *gen) revokes(info *conninfo.Info) bool {
	if info.Transport == "unix" && g.cfg.Peer.Peercreds && g.peers.Allow(info.Peer) != nil {
		return true
	}
	if g.policy == nil {
		return false
	}
	d := g.policy.Judge(connFacts(info), policy.StageHandshake)
	if d.Final && d.Action == policy.Deny {
		g.policy.Count(d)
		return true
	}
	return false
}

// policyRecorder is implemented by a ResponseWriter that wants the
// request's policy decision (the access log's recorder).
type policyRecorder interface {
	SetPolicy(action string, rule int)
}

// policyGuard judges every request against pol once the request's facts are
// known. A denied request gets a short text/plain 403 and never reaches
// next. Nil pol returns next unchanged.
func policyGuard(next http.Handler, pol *policy.Policy, log *slog.Logger) http.Handler {
	if pol == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := &policy.Facts{}
		if info, ok := conninfo.FromContext(r.Context()); ok {
			f = connFacts(info)
		}
		f.Host, f.Method, f.Path = r.Host, r.Method, r.URL.Path
		d := pol.Decide(f, policy.StageRequest)
		if pr, ok := w.(policyRecorder); ok {
			pr.SetPolicy(d.Action.String(), d.Rule)
		}
		if d.Action == policy.Allow {
			next.ServeHTTP(w, r)
			return
		}
		log.Info("request denied by policy", "rule", d.Rule, "text", d.Text, "method", r.Method, "path", r.URL.Path,
			"remote_addr", r.RemoteAddr, "request_id", policy.RequestID(r))
		policy.Refuse(w, http.StatusForbidden, "403 Forbidden: not allowed by policy")
	})
}

// PolicyCounts returns the decisions each server.policy rule made in the
// configuration in service (connections closed at accept or after the
// handshake, and requests), the default deny last; nil without a policy.
func (s *Server) PolicyCounts() []policy.Count {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return nil
	}
	return s.running.gen.Load().policy.Counts()
}

// quotaConn is the accepted connection with the policy_quota connection
// slots it holds, given back when it closes. It embeds *accept.Conn, so the
// socket stays reachable (SyscallConn, CloseWrite) as before.
type quotaConn struct {
	*accept.Conn
	mu       sync.Mutex
	releases []func()
}

func (c *quotaConn) hold(release func()) {
	c.mu.Lock()
	c.releases = append(c.releases, release)
	c.mu.Unlock()
}

func (c *quotaConn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	rs := c.releases
	c.releases = nil
	c.mu.Unlock()
	for _, r := range rs {
		r()
	}
	return err
}

// takeQuota takes the connection slots of the quotas keyed by facts known at
// stage s. A connection over a limit is still served, so that it can be told
// why: info.Quota makes every request on it a 429 and closes it.
func (g *gen) takeQuota(qc *quotaConn, info *conninfo.Info, s policy.Stage) {
	if g.quota == nil || info.Quota != "" {
		return
	}
	release, err := g.quota.Acquire(policy.QuotaKeys(connFacts(info)), s)
	if err != nil {
		info.Quota = err.Error()
		return
	}
	qc.hold(release)
}

// quotaGuard answers 429 with Retry-After to a request over a policy_quota:
// one on a connection over its connection limit (closing it), or one over
// its key's request rate.
func quotaGuard(next http.Handler, l *policy.Limiter) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, _ := conninfo.FromContext(r.Context())
		f := &policy.Facts{}
		if info != nil {
			f = connFacts(info)
		}
		retry := "1"
		if info != nil && info.Quota != "" {
			w.Header().Set("Connection", "close")
		} else if err := l.Request(policy.QuotaKeys(f)); err != nil {
			var qe *policy.QuotaError
			if errors.As(err, &qe) {
				retry = policy.RetryAfterSeconds(qe.RetryAfter)
			}
		} else {
			next.ServeHTTP(w, r)
			return
		}
		if pr, ok := w.(policyRecorder); ok {
			pr.SetPolicy("quota", 0)
		}
		w.Header().Set("Retry-After", retry)
		policy.Refuse(w, http.StatusTooManyRequests, "429 Too Many Requests: over a quota; retry later")
	})
}

// QuotaCounts returns the refusals of each policy_quota in the configuration
// in service; nil without quotas.
func (s *Server) QuotaCounts() []policy.QuotaCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return nil
	}
	return s.running.gen.Load().quota.Counts()
}
