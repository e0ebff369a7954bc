package policy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

	"tlsedge/config"
	"tlsedge/conninfo"
	"tlsedge/peercred"
)

// ErrPeerDenied is wrapped by every PeerDenyError, for errors.Is checks.
var ErrPeerDenied = errors.New("policy: peer not allowed")

// PeerDenyError says which rule refused a peer. Rule names the option (and, for a
// mount, its prefix), e.g. "peercreds_allow_uid,peercreds_allow_group" or
// "peercreds_mount_allow /admin".
type PeerDenyError struct {
	Rule string
	Peer *peercred.Creds // nil when the connection had no credentials
}

func (e *PeerDenyError) Error() string {
	if e.Peer == nil {
		return fmt.Sprintf("policy: %s: peer credentials unavailable", e.Rule)
	}
	return fmt.Sprintf("policy: %s: peer %s not allowed", e.Rule, e.Peer)
}

// Unwrap returns ErrPeerDenied.
func (e *PeerDenyError) Unwrap() error { return ErrPeerDenied }

// PeerPolicyConfig carries what compiling a PeerPolicy needs besides options.
// The zero value works.
type PeerPolicyConfig struct {
	// Resolver looks up names for user and group terms when the peer's
	// creds were not resolved already. Nil means a private Resolver with
	// default TTL is created when some term needs names.
	Resolver *peercred.Resolver
	// Logger receives one Info line per request denied by a mount rule
	// (accept-time denials are the caller's to log). Nil discards.
	Logger *slog.Logger
}

// PeerPolicy is the compiled form of PeerOptions: the accept-time rule and
// the per-mount rules. It is immutable and safe for concurrent use; a reload
// compiles a new one and swaps it in. A nil *PeerPolicy allows everything.
type PeerPolicy struct {
	accept    rule
	mounts    []mountRule // longest prefix first
	resolver  *peercred.Resolver
	logger    *slog.Logger
	acceptPol *Policy // the accept lists as rules (sugar.go)
	mountPol  *Policy // the mount rules as rules
}

// rule is one allow-list set; empty admits everyone.
type rule struct {
	name   string
	uids   []uint32
	gids   []uint32
	users  []string
	groups []string
}

type mountRule struct {
	prefix string
	rule
}

func (r *rule) empty() bool {
	return len(r.uids)+len(r.gids)+len(r.users)+len(r.groups) == 0
}

func (r *rule) needsNames() bool { return len(r.users)+len(r.groups) > 0 }

// Validate checks every peercreds_* option and returns all problems joined,
// each naming its key.
func (o *PeerOptions) Validate() error {
	_, err := compilePeer(o)
	return err
}

// NewPeerPolicy validates o and compiles it.
func NewPeerPolicy(o PeerOptions, cfg PeerPolicyConfig) (*PeerPolicy, error) {
	p, err := compilePeer(&o)
	if err != nil {
		return nil, err
	}
	p.logger = cfg.Logger
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	p.resolver = cfg.Resolver
	if p.resolver == nil && p.needsNames() {
		p.resolver = peercred.NewResolver(peercred.ResolverConfig{Logger: cfg.Logger})
	}
	p.compileRules(p.resolver)
	return p, nil
}

func compilePeer(o *PeerOptions) (*PeerPolicy, error) {
	var errs []error
	p := &PeerPolicy{}
	a := &p.accept
	var names []string
	for _, l := range []struct {
		key  string
		vals []string
		add  func(key, v string) error
	}{
		{"peercreds_allow_uid", o.PeercredsAllowUID, func(k, v string) error { return addID(&a.uids, k, v) }},
		{"peercreds_allow_gid", o.PeercredsAllowGID, func(k, v string) error { return addID(&a.gids, k, v) }},
		{"peercreds_allow_user", o.PeercredsAllowUser, func(k, v string) error { return addName(&a.users, k, v) }},
		{"peercreds_allow_group", o.PeercredsAllowGroup, func(k, v string) error { return addName(&a.groups, k, v) }},
	} {
		if len(l.vals) > 0 {
			names = append(names, l.key)
		}
		for _, v := range l.vals {
			if err := l.add(l.key, strings.TrimSpace(v)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	a.name = strings.Join(names, ",")

	const mkey = "peercreds_mount_allow"
	seen := map[string]bool{}
	for _, entry := range o.PeercredsMountAllow {
		m, err := parseMount(entry)
		if err != nil {
			errs = append(errs, config.KeyError(mkey, "%q: %v", entry, err))
			continue
		}
		if seen[m.prefix] {
			errs = append(errs, config.KeyError(mkey, "prefix %s given twice", m.prefix))
			continue
		}
		seen[m.prefix] = true
		p.mounts = append(p.mounts, m)
	}
	slices.SortStableFunc(p.mounts, func(x, y mountRule) int { return len(y.prefix) - len(x.prefix) })

	if !o.Peercreds && (!a.empty() || len(o.PeercredsMountAllow) > 0) {
		errs = append(errs, config.KeyError("peercreds", "must be True when a peercreds_allow_* or peercreds_mount_allow rule is set"))
	}
	if o.PeercredsResolve && !o.Peercreds {
		errs = append(errs, config.KeyError("peercreds_resolve", "needs peercreds = True"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

func addID(dst *[]uint32, key, v string) error {
	id, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return config.KeyError(key, "%q is not a numeric id", v)
	}
	*dst = append(*dst, uint32(id))
	return nil
}

func addName(dst *[]string, key, v string) error {
	if v == "" || strings.ContainsAny(v, " \t:=,") {
		return config.KeyError(key, "%q is not a valid name", v)
	}
	*dst = append(*dst, v)
	return nil
}

// parseMount parses PREFIX=TERM[ TERM...].
func parseMount(entry string) (mountRule, error) {
	prefix, terms, ok := strings.Cut(strings.TrimSpace(entry), "=")
	if !ok {
		return mountRule{}, errors.New("want PREFIX=TERM[ TERM...]")
	}
	if !strings.HasPrefix(prefix, "/") {
		return mountRule{}, errors.New("prefix must start with /")
	}
	m := mountRule{prefix: cleanPath(prefix)}
	m.name = "peercreds_mount_allow " + m.prefix
	fields := strings.Fields(terms)
	if len(fields) == 0 {
		return mountRule{}, errors.New("no terms: give at least one of uid:N, gid:N, user:NAME, group:NAME")
	}
	var errs []error
	for _, f := range fields {
		kind, val, _ := strings.Cut(f, ":")
		var err error
		switch kind {
		case "uid":
			err = addID(&m.uids, "uid", val)
		case "gid":
			err = addID(&m.gids, "gid", val)
		case "user":
			err = addName(&m.users, "user", val)
		case "group":
			err = addName(&m.groups, "group", val)
		default:
			err = fmt.Errorf("term %q: want uid:N, gid:N, user:NAME or group:NAME", f)
		}
		errs = append(errs, err)
	}
	return m, errors.Join(errs...)
}

// cleanPath makes a request path or prefix comparable: rooted, without dot
// segments or a trailing slash, so "/admin/../admin/" and "/admin" are one.
func cleanPath(p string) string {
	return path.Clean("/" + p)
}

func (p *PeerPolicy) needsNames() bool {
	if p.accept.needsNames() {
		return true
	}
	for _, m := range p.mounts {
		if m.needsNames() {
			return true
		}
	}
	return false
}

// Resolver is the name resolver p uses; nil when none is needed.
func (p *PeerPolicy) Resolver() *peercred.Resolver {
	if p == nil {
		return nil
	}
	return p.resolver
}

// Empty reports whether p admits every peer at accept (no allow-list set).
// The caller may then skip reading credentials for the policy's sake.
func (p *PeerPolicy) Empty() bool { return p == nil || p.accept.empty() }

// HasMounts reports whether p has per-path rules, i.e. whether Middleware
// does anything.
func (p *PeerPolicy) HasMounts() bool { return p != nil && len(p.mounts) > 0 }

// Allow applies the accept-time allow-lists to c, the credentials read when
// the connection was accepted (nil if they could not be read). It returns nil
// or a *PeerDenyError; the caller closes a denied connection before reading.
func (p *PeerPolicy) Allow(c *peercred.Creds) error {
	if p == nil || p.acceptPol == nil {
		return nil
	}
	if _, denied := deniedBy(p.acceptPol, &Facts{Peer: c}, p.accept.name); denied {
		return p.denyErr(p.accept.name, c)
	}
	return nil
}

// AllowPath applies the per-mount rule whose prefix is the longest match for
// the URL path urlPath, if any, to c. Paths are compared as server.policy
// compares them (NormalizePath).
func (p *PeerPolicy) AllowPath(urlPath string, c *peercred.Creds) error {
	if p == nil || p.mountPol == nil {
		return nil
	}
	if name, denied := deniedBy(p.mountPol, &Facts{Peer: c, Path: urlPath}, "peercreds_mount_allow"); denied {
		return p.denyErr(name, c)
	}
	return nil
}

func (p *PeerPolicy) denyErr(name string, c *peercred.Creds) error {
	return &PeerDenyError{Rule: name, Peer: c}
}

// Middleware enforces p's per-mount rules on each request, reading the peer
// from the request context (conninfo.Info.Peer). A denied request gets a
// short text/plain 403 and never reaches next. With no mount rules it
// returns next unchanged.
func (p *PeerPolicy) Middleware(next http.Handler) http.Handler {
	if !p.HasMounts() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := peerFrom(r)
		if err := p.AllowPath(r.URL.Path, c); err != nil {
			p.deny(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// PeerMiddleware guards one mount with a whole policy: every request to next
// must pass pol's allow-lists (Allow), judged on the peer in the request
// context. Use it when a mount carries its own PeerOptions; use
// PeerPolicy.Middleware for peercreds_mount_allow rules. A nil pol or one
// with empty lists returns next unchanged.
func PeerMiddleware(next http.Handler, pol *PeerPolicy) http.Handler {
	if pol.Empty() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := pol.Allow(peerFrom(r)); err != nil {
			pol.deny(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func peerFrom(r *http.Request) *peercred.Creds {
	if info, ok := conninfo.FromContext(r.Context()); ok {
		return info.Peer
	}
	return nil
}

func (p *PeerPolicy) deny(w http.ResponseWriter, r *http.Request, err error) {
	var de *PeerDenyError
	rule := ""
	if errors.As(err, &de) {
		rule = de.Rule
	}
	if p.logger != nil {
		p.logger.Info("peer denied", "rule", rule, "peer", peerFrom(r), "path", r.URL.Path, "remote_addr", r.RemoteAddr)
	}
	Refuse(w, http.StatusForbidden, "403 Forbidden: peer not allowed")
}
