package server

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"

	"tlsedge/peercred"
	"tlsedge/policy"
)

// ExplainQuery is a client to explain a server's decision for: what
// `tlsedge policy explain` takes as flags and the control socket as query
// parameters. Empty fields are facts the client does not have.
type ExplainQuery struct {
	Server string              // the server's name; "" or "main" for the main server
	SNI    string              // server name sent in the handshake; defaults to Host without its port
	Host   string              // Host header
	Method string              // defaults to GET
	Path   string              // the request path as sent
	Src    string              // the client's IP address (TCP listeners)
	Certs  []*x509.Certificate // the client certificate, leaf first, then intermediates
	UID    *uint32             // peer credentials (UNIX listeners with peercreds)
	GID    *uint32             // defaults to the user's primary group, else to UID
	Exe    string              // the peer's executable
}

// Explanation is a server's decision on an ExplainQuery, the way the server
// would reach it, with every rule looked at.
type Explanation struct {
	Server string       `json:"server"`
	Allow  bool         `json:"allow"`
	Stage  policy.Stage `json:"stage"` // when the server decides: accept and handshake close the connection
	Lines  []string     `json:"lines"` // the decision first, then the rules and notes
}

func (e *Explanation) String() string { return strings.Join(e.Lines, "\n") + "\n" }

// Explain judges q on the server named q.Server among cfgs exactly as the
// server does: the peer allow-lists at accept, the client-certificate mode,
// CA and ssl_client_allow in the handshake, server.policy (at the earliest
// stage that decides it) and the per-path peer rules. It needs no running
// server and reads only the ssl_client_ca file.
func Explain(cfgs []Config, q ExplainQuery) (*Explanation, error) {
	name := cmp.Or(q.Server, "main")
	var c *Config
	for i := range cfgs {
		if cmp.Or(cfgs[i].Name, "main") == name {
			c = &cfgs[i]
		}
	}
	if c == nil {
		var names []string
		for _, x := range cfgs {
			names = append(names, cmp.Or(x.Name, "main"))
		}
		return nil, fmt.Errorf("no server %q: the configuration has %s", name, strings.Join(names, ", "))
	}
	ex := &Explanation{Server: name}
	note := func(format string, args ...any) { ex.Lines = append(ex.Lines, "  "+fmt.Sprintf(format, args...)) }
	decide := func(allow bool, stage policy.Stage, format string, args ...any) (*Explanation, error) {
		ex.Allow, ex.Stage = allow, stage
		word := "deny"
		if allow {
			word = "allow"
		}
		head := fmt.Sprintf("%s: %s (server %s, decided at %s)", word, fmt.Sprintf(format, args...), name, stage)
		ex.Lines = append([]string{head}, ex.Lines...)
		return ex, nil
	}

	f := &policy.Facts{Host: q.Host, Method: cmp.Or(q.Method, "GET"), Path: cmp.Or(q.Path, "/"), Exe: q.Exe}
	unix := c.SocketFile != ""
	if q.Src != "" {
		if unix {
			note("--src %s: ignored, server %s listens on a UNIX socket", q.Src, name)
		} else {
			a, err := netip.ParseAddr(q.Src)
			if err != nil {
				return nil, fmt.Errorf("--src %q: not an IP address", q.Src)
			}
			f.Src = a.Unmap()
		}
	} else if !unix {
		note("no --src: src: rules see no address and do not match")
	}

	// Accept: peer credentials and the peercreds_allow_* lists.
	peers, err := policy.NewPeerPolicy(c.Peer, policy.PeerPolicyConfig{})
	if err != nil {
		return nil, fmt.Errorf("%speercreds: %w", c.KeyPrefix(), err)
	}
	if q.UID != nil {
		if !unix || !c.Peer.Peercreds {
			note("--uid: ignored, server %s reads no peer credentials (it needs socket_file and peercreds = True)", name)
		} else {
			cr := &peercred.Creds{UID: *q.UID, GID: *q.UID}
			if q.GID != nil {
				cr.GID = *q.GID
			} else if gid, ok := primaryGID(*q.UID); ok {
				cr.GID = gid
			}
			peercred.NewResolver(peercred.ResolverConfig{}).Resolve(cr)
			f.Peer = cr
			note("peer %s", cr)
		}
	}
	if err := peers.Allow(f.Peer); err != nil {
		var de *policy.PeerDenyError
		errors.As(err, &de)
		return decide(false, policy.StageAccept, "%s refuses the peer (the connection is closed before a byte is read)", de.Rule)
	}

	pol := policy.NewPolicy(c.Rule.Policy.Parsed(), nil)
	// ruleNotes lists every rule server.policy looks at and returns its
	// decision.
	ruleNotes := func() policy.Decision {
		d, steps := pol.Explain(f)
		for _, st := range steps {
			if st.Match {
				note("rule %d %q: matches", st.Rule.Num, st.Rule.Text)
			} else {
				note("rule %d %q: no match: %s", st.Rule.Num, st.Rule.Text, st.Reason)
			}
		}
		return d
	}
	if d := pol.Judge(f, policy.StageAccept); d.Final && d.Action == policy.Deny {
		ruleNotes()
		if d.Rule == 0 {
			return decide(false, policy.StageAccept, "no rule of server.policy can match (the default is deny; the connection is closed before the handshake)")
		}
		return decide(false, policy.StageAccept, "rule %d %q (the connection is closed before the handshake)", d.Rule, d.Text)
	}

	// The handshake: what ssl_client_auth asks for, and whether it verifies.
	if c.TLS.SSLModule != "none" {
		f.SNI = q.SNI
		if f.SNI == "" {
			f.SNI = hostOnly(q.Host)
		}
		mode := c.TLS.SSLClientAuth
		switch {
		case len(q.Certs) > 0 && mode == policy.ClientAuthNone:
			note("--cert: not asked for: ssl_client_auth is none")
		case len(q.Certs) > 0:
			f.Cert = q.Certs[0]
			if mode.Verifies() {
				if err := verifyClient(c.TLS.SSLClientCA, q.Certs); err != nil {
					return decide(false, policy.StageHandshake, "the client certificate does not verify against ssl_client_ca: %v", err)
				}
				f.Verified = true
			}
			if c.TLS.SSLClientAllow.Len() > 0 {
				allow, err := policy.ParseAllowList(c.TLS.SSLClientAllow.List())
				if err != nil {
					return nil, err
				}
				if _, ok := allow.Allows(f.Cert); !ok {
					return decide(false, policy.StageHandshake, "the client certificate is not in ssl_client_allow")
				}
			}
		case mode == policy.ClientAuthRequire || mode == policy.ClientAuthRequireAndVerify:
			return decide(false, policy.StageHandshake, "ssl_client_auth %s and no client certificate", mode)
		}
	} else if len(q.Certs) > 0 || q.SNI != "" {
		note("--cert, --sni: ignored, server %s speaks plain HTTP", name)
	}

	// server.policy, at the earliest stage that decides it.
	if pol != nil {
		d := ruleNotes()
		stage := policy.StageRequest
		for s := policy.StageAccept; s < policy.StageRequest; s++ {
			if pol.Judge(f, s).Final {
				stage = s
				break
			}
		}
		if d.Action == policy.Deny {
			if d.Rule == 0 {
				return decide(false, stage, "no rule of server.policy matches (once any rule is set, the default is deny)")
			}
			return decide(false, stage, "rule %d %q", d.Rule, d.Text)
		}
		if err := peers.AllowPath(f.Path, f.Peer); err != nil {
			var de *policy.PeerDenyError
			errors.As(err, &de)
			return decide(false, policy.StageRequest, "server.policy rule %d allows, but %s refuses the peer", d.Rule, de.Rule)
		}
		return decide(true, policy.StageRequest, "rule %d %q", d.Rule, d.Text)
	}
	if err := peers.AllowPath(f.Path, f.Peer); err != nil {
		var de *policy.PeerDenyError
		errors.As(err, &de)
		return decide(false, policy.StageRequest, "%s refuses the peer", de.Rule)
	}
	return decide(true, policy.StageRequest, "server %s has no server.policy", name)
}

func hostOnly(h string) string {
	if ap, err := netip.ParseAddrPort(h); err == nil {
		return ap.Addr().String()
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[:i], ":") {
		return h[:i]
	}
	return h
}

// verifyClient verifies certs (leaf first) against the PEM roots in caFile,
// for client authentication, as crypto/tls does in the handshake.
func verifyClient(caFile string, certs []*x509.Certificate) error {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("ssl_client_ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data) {
		return fmt.Errorf("ssl_client_ca %s holds no PEM certificate", caFile)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// primaryGID looks up the primary group of uid in the user database.
func primaryGID(uid uint32) (uint32, bool) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return 0, false
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(gid), err == nil
}
