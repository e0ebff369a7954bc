package peercred

import (
	"errors"
	"log/slog"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ResolverConfig configures a Resolver. The zero value works.
type ResolverConfig struct {
	// TTL is how long a looked-up name (or the fact that an ID is unknown) is
	// reused. Zero means 30s: short, so a renamed, removed or regrouped
	// account is noticed without a restart, yet a busy socket does not read
	// /etc/passwd (or ask NSS, LDAP...) on every connection.
	TTL time.Duration
	// MaxEntries bounds each of the user and group caches, so a client that
	// cycles through many uids cannot grow memory without limit. Zero means 1024.
	MaxEntries int
	// Logger receives lookup failures other than "unknown ID". Nil discards.
	Logger *slog.Logger
}

const (
	defaultResolverTTL = 30 * time.Second
	defaultResolverMax = 1024
)

// Resolver fills the name fields of Creds (peercreds_resolve) from the OS user
// and group databases through os/user, caching results for a short TTL. It is
// safe for concurrent use. A uid or gid the database does not know leaves the
// name empty: resolution never fails a connection, because the numeric IDs
// the kernel reported are the ground truth and names are a convenience.
type Resolver struct {
	ttl    time.Duration
	max    int
	logger *slog.Logger

	// The lookups and clock are fields so tests can count and fake them.
	now         func() time.Time
	lookupUser  func(uid string) (*user.User, error)
	lookupGroup func(gid string) (*user.Group, error)
	userGroups  func(u *user.User) ([]string, error)

	mu     sync.Mutex
	users  map[uint32]cached[userInfo]
	groups map[uint32]cached[string]
}

type userInfo struct {
	name   string
	groups []uint32 // every group ID the database lists the user in
}

type cached[T any] struct {
	val     T
	expires time.Time
}

// NewResolver returns a Resolver with an empty cache.
func NewResolver(cfg ResolverConfig) *Resolver {
	r := &Resolver{
		ttl:         cfg.TTL,
		max:         cfg.MaxEntries,
		logger:      cfg.Logger,
		now:         time.Now,
		lookupUser:  user.LookupId,
		lookupGroup: user.LookupGroupId,
		userGroups:  (*user.User).GroupIds,
		users:       make(map[uint32]cached[userInfo]),
		groups:      make(map[uint32]cached[string]),
	}
	if r.ttl <= 0 {
		r.ttl = defaultResolverTTL
	}
	if r.max <= 0 {
		r.max = defaultResolverMax
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	return r
}

// Resolve sets c.User, c.Group and c.Groups from c.UID and c.GID. Group is the
// name of the gid the kernel reported; Groups are the names of every group the
// user database lists User in (its login group included), sorted, which may
// differ from the groups the peer process actually holds. A nil c is ignored.
func (r *Resolver) Resolve(c *Creds) {
	if c == nil {
		return
	}
	u := r.user(c.UID)
	c.User = u.name
	c.Group = r.group(c.GID)
	c.Groups = nil
	for _, gid := range u.groups {
		if name := r.group(gid); name != "" {
			c.Groups = append(c.Groups, name)
		}
	}
	slices.Sort(c.Groups)
	c.Groups = slices.Compact(c.Groups)
}

func (r *Resolver) user(uid uint32) userInfo {
	now := r.now()
	r.mu.Lock()
	e, ok := r.users[uid]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.val
	}
	// Look up without holding the lock: NSS may be slow (LDAP, sssd), and
	// other peers must not wait behind it. Two concurrent misses for the same
	// uid both look it up; the result is the same.
	var info userInfo
	uidStr := strconv.FormatUint(uint64(uid), 10)
	u, err := r.lookupUser(uidStr)
	switch {
	case err == nil:
		info.name = u.Username
		ids, err := r.userGroups(u)
		if err != nil {
			r.logger.Warn("peercred: listing groups failed", "uid", uid, "err", err)
		}
		for _, s := range ids {
			if id, err := strconv.ParseUint(s, 10, 32); err == nil {
				info.groups = append(info.groups, uint32(id))
			}
		}
	case errors.As(err, new(user.UnknownUserIdError)):
	default:
		r.logger.Warn("peercred: user lookup failed", "uid", uid, "err", err)
	}
	r.mu.Lock()
	store(r.users, uid, info, now.Add(r.ttl), now, r.max)
	r.mu.Unlock()
	return info
}

func (r *Resolver) group(gid uint32) string {
	now := r.now()
	r.mu.Lock()
	e, ok := r.groups[gid]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.val
	}
	var name string
	g, err := r.lookupGroup(strconv.FormatUint(uint64(gid), 10))
	switch {
	case err == nil:
		name = g.Name
	case errors.As(err, new(user.UnknownGroupIdError)):
	default:
		r.logger.Warn("peercred: group lookup failed", "gid", gid, "err", err)
	}
	r.mu.Lock()
	store(r.groups, gid, name, now.Add(r.ttl), now, r.max)
	r.mu.Unlock()
	return name
}

// store puts val in m, first making room when m is full: expired entries go,
// then, if none had expired, the one closest to expiry (the oldest). The scan
// is linear but runs only on a miss with a full cache, bounded by max.
func store[T any](m map[uint32]cached[T], key uint32, val T, expires, now time.Time, max int) {
	if _, ok := m[key]; !ok && len(m) >= max {
		for k, e := range m {
			if !now.Before(e.expires) {
				delete(m, k)
			}
		}
		if len(m) >= max {
			var (
				oldest    uint32
				oldestExp time.Time
				first     = true
			)
			for k, e := range m {
				if first || e.expires.Before(oldestExp) {
					oldest, oldestExp, first = k, e.expires, false
				}
			}
			delete(m, oldest)
		}
	}
	m[key] = cached[T]{val: val, expires: expires}
}
