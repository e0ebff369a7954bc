package apps

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"tlsedge/apps/appopt"
	"tlsedge/router"
)

// pick chooses a member by the pool's method among those up and not yet
// tried for this request (the bits of tried), or nil when there is none.
func (pl *pool) pick(r *http.Request, tried uint64, now time.Time) *member {
	switch pl.lb {
	case appopt.LeastConn:
		return pl.leastConn(tried, now)
	case appopt.RandomTwo:
		return pl.randomTwo(tried, now)
	case appopt.IPHash:
		pe := clientAddrs(r)
		if a := pe.addr.Addr(); a.IsValid() {
			b := a.As16()
			return pl.rendezvous(string(b[:]), tried, now)
		}
	case appopt.HeaderHash:
		if v := r.Header.Get(pl.lbName); v != "" {
			return pl.rendezvous(v, tried, now)
		}
	}
	return pl.roundRobin(tried, now)
}

func (m *member) eligible(tried uint64, now time.Time) bool {
	return tried&(1<<m.idx) == 0 && m.up(now)
}

// roundRobin is nginx's smooth weighted round robin: every pick adds each
// member's weight to its current weight, takes the largest and takes the
// total off it, so that weights 5, 1, 1 give a a b a c a a rather than
// five a's in a row.
func (pl *pool) roundRobin(tried uint64, now time.Time) *member {
	return pl.smooth(func(m *member) bool { return m.eligible(tried, now) })
}

// smooth is the smooth weighted round robin among the members ok takes.
func (pl *pool) smooth(ok func(*member) bool) *member {
	pl.rrMu.Lock()
	defer pl.rrMu.Unlock()
	var best *member
	total := 0
	for _, m := range pl.members {
		if !ok(m) {
			continue
		}
		m.cur += m.weight
		total += m.weight
		if best == nil || m.cur > best.cur {
			best = m
		}
	}
	if best != nil {
		best.cur -= total
	}
	return best
}

// busier reports whether a carries more requests per unit of weight than b.
func busier(a, b *member) bool {
	return a.inflight.Load()*int64(b.weight) > b.inflight.Load()*int64(a.weight)
}

// leastConn picks the member with the fewest requests in flight per unit
// of weight; ties (idle members, above all) go by smooth weighted round
// robin, as nginx's least_conn, so that weights hold when load is light.
func (pl *pool) leastConn(tried uint64, now time.Time) *member {
	var least *member
	var ties [maxPoolMembers]bool
	for _, m := range pl.members {
		if !m.eligible(tried, now) {
			continue
		}
		switch {
		case least == nil || busier(least, m):
			least = m
			ties = [maxPoolMembers]bool{}
			ties[m.idx] = true
		case !busier(m, least):
			ties[m.idx] = true
		}
	}
	if least == nil {
		return nil
	}
	return pl.smooth(func(m *member) bool { return ties[m.idx] })
}

// randomTwo is the power of two choices: the next member by smooth
// weighted round robin and one drawn at random by weight; the less busy of
// the two takes the request, the round robin's on a tie. Under load it
// steers away from a busy upstream as two random draws would; when the
// upstreams are idle alike the shares follow the weights exactly instead
// of by chance.
func (pl *pool) randomTwo(tried uint64, now time.Time) *member {
	a := pl.roundRobin(tried, now)
	if a == nil {
		return nil
	}
	total := 0
	for _, m := range pl.members {
		if m != a && m.eligible(tried, now) {
			total += m.weight
		}
	}
	if total == 0 {
		return a
	}
	x := rand.IntN(total)
	var b *member
	for _, m := range pl.members {
		if m == a || !m.eligible(tried, now) {
			continue
		}
		if x < m.weight {
			b = m
			break
		}
		x -= m.weight
	}
	if b != nil && busier(a, b) {
		return b
	}
	return a
}

// rendezvous hashes key to a member (weighted rendezvous hashing): each
// member scores the key, the highest score wins. A member going down moves
// only the keys it held, each to its own second choice.
func (pl *pool) rendezvous(key string, tried uint64, now time.Time) *member {
	kh := hash64(key)
	var best *member
	bestScore := math.Inf(-1)
	for _, m := range pl.members {
		if !m.eligible(tried, now) {
			continue
		}
		h := mix64(kh ^ m.seed)
		u := (float64(h>>11) + 0.5) / (1 << 53) // in (0, 1)
		score := -float64(m.weight) / math.Log(u)
		if score > bestScore {
			best, bestScore = m, score
		}
	}
	return best
}

// hash64 is FNV-1a, finished by mix64.
func hash64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

// mix64 is splitmix64's finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// memberID names an upstream in a sticky cookie: a hash of how it is
// written, the same in every process and after a reload, which tells
// nothing of its address.
func memberID(name string) string {
	sum := sha256.Sum256([]byte("tlsedge pool member\x00" + name))
	return hex.EncodeToString(sum[:8])
}

// cookieValue is "ID.SIGNATURE": the member's id and an HMAC-SHA256 of it
// under the pool's key, so that a client can return to the upstream it
// was given but cannot choose one.
func (pl *pool) cookieValue(m *member) string {
	return m.id + "." + pl.sign(m.id)
}

func (pl *pool) sign(id string) string {
	mac := hmac.New(sha256.New, pl.key)
	mac.Write([]byte(pl.lbName))
	mac.Write([]byte{0})
	mac.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
}

// stickyMember is the member a valid sticky cookie names, or nil (no
// cookie, a bad signature, an upstream no longer in the pool).
func (pl *pool) stickyMember(r *http.Request) *member {
	if pl.lb != appopt.Cookie {
		return nil
	}
	c, err := r.Cookie(pl.lbName)
	if err != nil {
		return nil
	}
	id, sig, ok := strings.Cut(c.Value, ".")
	if !ok || len(id) != 16 {
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(sig), []byte(pl.sign(id))) != 1 {
		return nil
	}
	for _, m := range pl.members {
		if m.id == id {
			return m
		}
	}
	return nil
}

// setCookie makes the client stick to m, replacing a cookie set for a
// member tried before. The cookie is scoped to the mount's path, HttpOnly,
// SameSite=Lax, and Secure on a TLS connection.
func (pl *pool) setCookie(w http.ResponseWriter, r *http.Request, m *member) {
	path := "/"
	if mt, ok := router.MountFromContext(r.Context()); ok && mt.Prefix != "" {
		path = mt.Prefix
	}
	c := &http.Cookie{Name: pl.lbName, Value: pl.cookieValue(m), Path: path, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: clientAddrs(r).tls}
	h := w.Header()
	prefix := pl.lbName + "="
	kept := h["Set-Cookie"][:0]
	for _, v := range h["Set-Cookie"] {
		if !strings.HasPrefix(v, prefix) {
			kept = append(kept, v)
		}
	}
	h["Set-Cookie"] = append(kept, c.String())
}
