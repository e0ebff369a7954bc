package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// QuotaKey names what a quota counts by.
type QuotaKey int

// The keys a quota can count by.
const (
	QuotaIP     QuotaKey = iota // the client's IP address (TCP)
	QuotaUID                    // the peer's uid (UNIX sockets with peercreds)
	QuotaCert                   // the SHA-256 fingerprint of the client certificate
	QuotaSPIFFE                 // the SPIFFE ID of a verified client certificate
)

var quotaKeyNames = []string{"ip", "uid", "cert", "spiffe"}

func (k QuotaKey) String() string { return quotaKeyNames[k] }

// Stage is when the key is known: the certificate's keys after the
// handshake, the others at accept.
func (k QuotaKey) Stage() Stage {
	if k == QuotaCert || k == QuotaSPIFFE {
		return StageHandshake
	}
	return StageAccept
}

// Quota is one policy_quota entry: "KEY conns:N rps:R [burst:B]".
type Quota struct {
	Text  string
	Key   QuotaKey
	Conns int     // open connections per key; 0 for no limit
	RPS   float64 // requests per second per key; 0 for no limit
	Burst int     // requests allowed at once; defaults to max(1, ceil(RPS))
}

// ParseQuota parses one policy_quota entry.
func ParseQuota(s string) (Quota, error) {
	q := Quota{Text: strings.TrimSpace(s)}
	fields := strings.Fields(s)
	if len(fields) < 2 {
		return q, errors.New("want KEY conns:N rps:R [burst:B], KEY one of ip, uid, cert, spiffe")
	}
	k := slicesIndex(quotaKeyNames, strings.ToLower(fields[0]))
	if k < 0 {
		return q, fmt.Errorf("key %q: use ip, uid, cert or spiffe", fields[0])
	}
	q.Key = QuotaKey(k)
	for _, f := range fields[1:] {
		name, v, _ := strings.Cut(f, ":")
		switch name {
		case "conns", "burst":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1<<20 {
				return q, fmt.Errorf("%s: %q is not a count from 1 to %d", name, v, 1<<20)
			}
			if name == "conns" {
				q.Conns = n
			} else {
				q.Burst = n
			}
		case "rps":
			r, err := strconv.ParseFloat(v, 64)
			if err != nil || !(r > 0) || r > 1e6 || math.IsInf(r, 0) {
				return q, fmt.Errorf("rps: %q is not a rate above 0 (requests per second, e.g. 10 or 0.5)", v)
			}
			q.RPS = r
		default:
			return q, fmt.Errorf("%q: use conns:N, rps:R or burst:B", f)
		}
	}
	if q.Conns == 0 && q.RPS == 0 {
		return q, errors.New("no limit: give conns:N, rps:R or both")
	}
	if q.Burst > 0 && q.RPS == 0 {
		return q, errors.New("burst needs rps")
	}
	if q.Burst == 0 {
		q.Burst = max(1, int(math.Ceil(q.RPS)))
	}
	return q, nil
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// QuotaList is the policy_quota option: entries parsed when set.
type QuotaList struct {
	items  []string
	quotas []Quota
}

// SetList implements config.ListValue.
func (l *QuotaList) SetList(items []string) error {
	var qs []Quota
	var errs []error
	seen := map[QuotaKey]bool{}
	for _, it := range items {
		q, err := ParseQuota(it)
		if err == nil && seen[q.Key] {
			err = fmt.Errorf("a second quota by %s: give one entry per key", q.Key)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", it, err))
			continue
		}
		seen[q.Key] = true
		qs = append(qs, q)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.items, l.quotas = items, qs
	return nil
}

// List implements config.ListValue.
func (l *QuotaList) List() []string { return l.items }

// WholeItems implements config.WholeItems.
func (l *QuotaList) WholeItems() {}

// Quotas returns the parsed entries.
func (l *QuotaList) Quotas() []Quota { return l.quotas }

// QuotaKeys returns the key values f has for each kind of key ("" when f
// has none: a TCP client has no uid, a client without a verified
// certificate no SPIFFE ID).
func QuotaKeys(f *Facts) [4]string {
	var k [4]string
	if f.Src.IsValid() {
		k[QuotaIP] = f.Src.String()
	}
	if f.Peer != nil {
		k[QuotaUID] = strconv.FormatUint(uint64(f.Peer.UID), 10)
	}
	if f.Cert != nil {
		sum := sha256.Sum256(f.Cert.Raw)
		k[QuotaCert] = hex.EncodeToString(sum[:])
		if f.Verified {
			for _, u := range f.Cert.URIs {
				if u.Scheme == "spiffe" {
					k[QuotaSPIFFE] = u.String()
					break
				}
			}
		}
	}
	return k
}

// Limiter enforces quotas. It is safe for concurrent use.
type Limiter struct {
	quotas []Quota
	state  []*quotaState
	now    func() time.Time
}

type quotaState struct {
	mu       sync.Mutex
	conns    map[string]int
	buckets  map[string]*bucket
	refConns atomic.Uint64 // connections refused
	refReqs  atomic.Uint64 // requests refused
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the rate state kept per quota: past it, buckets that
// have refilled (their keys idle long enough to be full again) are dropped.
const maxBuckets = 1 << 16

// NewLimiter returns a Limiter for qs; nil when qs is empty.
func NewLimiter(qs []Quota) *Limiter {
	if len(qs) == 0 {
		return nil
	}
	l := &Limiter{quotas: qs, now: time.Now}
	for range qs {
		l.state = append(l.state, &quotaState{conns: map[string]int{}, buckets: map[string]*bucket{}})
	}
	return l
}

// QuotaError says which quota refused, and when to retry.
type QuotaError struct {
	Quota      string
	Key        string
	RetryAfter time.Duration
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota %q exceeded for %s", e.Quota, e.Key)
}

// Acquire takes a connection slot in every conns quota whose key is known
// at stage s and present in keys. On refusal it takes nothing. release
// gives the slots back; it is safe to call more than once.
func (l *Limiter) Acquire(keys [4]string, s Stage) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	var held []func()
	undo := func() {
		for _, r := range held {
			r()
		}
	}
	for i, q := range l.quotas {
		k := keys[q.Key]
		if q.Conns == 0 || q.Key.Stage() != s || k == "" {
			continue
		}
		st := l.state[i]
		st.mu.Lock()
		if st.conns[k] >= q.Conns {
			st.mu.Unlock()
			st.refConns.Add(1)
			undo()
			return func() {}, &QuotaError{Quota: q.Text, Key: q.Key.String() + " " + k, RetryAfter: time.Second}
		}
		st.conns[k]++
		st.mu.Unlock()
		var once sync.Once
		held = append(held, func() {
			once.Do(func() {
				st.mu.Lock()
				if st.conns[k]--; st.conns[k] <= 0 {
					delete(st.conns, k)
				}
				st.mu.Unlock()
			})
		})
	}
	return undo, nil
}

// Request takes one request from every rps quota whose key is present.
func (l *Limiter) Request(keys [4]string) error {
	if l == nil {
		return nil
	}
	now := l.now()
	for i, q := range l.quotas {
		k := keys[q.Key]
		if q.RPS == 0 || k == "" {
			continue
		}
		st := l.state[i]
		st.mu.Lock()
		b := st.buckets[k]
		if b == nil {
			if len(st.buckets) >= maxBuckets {
				st.sweep(q, now)
			}
			b = &bucket{tokens: float64(q.Burst), last: now}
			st.buckets[k] = b
		}
		b.tokens = min(float64(q.Burst), b.tokens+now.Sub(b.last).Seconds()*q.RPS)
		b.last = now
		if b.tokens < 1 {
			wait := time.Duration((1 - b.tokens) / q.RPS * float64(time.Second))
			st.mu.Unlock()
			st.refReqs.Add(1)
			return &QuotaError{Quota: q.Text, Key: q.Key.String() + " " + k, RetryAfter: wait}
		}
		b.tokens--
		st.mu.Unlock()
	}
	return nil
}

func (st *quotaState) sweep(q Quota, now time.Time) {
	for k, b := range st.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*q.RPS >= float64(q.Burst) {
			delete(st.buckets, k)
		}
	}
}

// QuotaCount is one quota's refusals.
type QuotaCount struct {
	Quota       string
	Connections uint64 // connections refused (answered 429 and closed)
	Requests    uint64 // requests refused with 429
}

// Counts returns each quota's refusals.
func (l *Limiter) Counts() []QuotaCount {
	if l == nil {
		return nil
	}
	out := make([]QuotaCount, len(l.quotas))
	for i, q := range l.quotas {
		out[i] = QuotaCount{Quota: q.Text, Connections: l.state[i].refConns.Load(), Requests: l.state[i].refReqs.Load()}
	}
	return out
}

// RetryAfterSeconds is the Retry-After value for d: whole seconds, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
