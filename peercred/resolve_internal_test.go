package peercred

import (
	"errors"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeDB is a user database whose lookups are counted, so tests can see what
// the cache saves.
type fakeDB struct {
	mu          sync.Mutex
	users       map[string]string   // uid -> name
	groups      map[string]string   // gid -> name
	members     map[string][]string // uid -> gids
	userCalls   int
	groupCalls  int
	brokenGroup bool
}

func (db *fakeDB) install(r *Resolver) {
	r.lookupUser = func(uid string) (*user.User, error) {
		db.mu.Lock()
		defer db.mu.Unlock()
		db.userCalls++
		name, ok := db.users[uid]
		if !ok {
			id, _ := strconv.Atoi(uid)
			return nil, user.UnknownUserIdError(id)
		}
		return &user.User{Uid: uid, Username: name}, nil
	}
	r.lookupGroup = func(gid string) (*user.Group, error) {
		db.mu.Lock()
		defer db.mu.Unlock()
		db.groupCalls++
		if db.brokenGroup {
			return nil, errors.New("nss: connection refused")
		}
		name, ok := db.groups[gid]
		if !ok {
			return nil, user.UnknownGroupIdError(gid)
		}
		return &user.Group{Gid: gid, Name: name}, nil
	}
	r.userGroups = func(u *user.User) ([]string, error) {
		db.mu.Lock()
		defer db.mu.Unlock()
		return db.members[u.Uid], nil
	}
}

func newFake() *fakeDB {
	return &fakeDB{
		users:   map[string]string{"1000": "alice", "0": "root"},
		groups:  map[string]string{"1000": "alice", "27": "sudo", "0": "root", "4": "adm"},
		members: map[string][]string{"1000": {"1000", "27", "4", "999"}, "0": {"0"}},
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name   string
		in     Creds
		want   Creds
		broken bool
	}{
		{"known user and groups", Creds{UID: 1000, GID: 1000}, Creds{UID: 1000, GID: 1000, User: "alice", Group: "alice", Groups: []string{"adm", "alice", "sudo"}}, false},
		{"gid differs from login group", Creds{UID: 0, GID: 27}, Creds{UID: 0, GID: 27, User: "root", Group: "sudo", Groups: []string{"root"}}, false},
		{"unknown uid and gid", Creds{UID: 4242, GID: 4242}, Creds{UID: 4242, GID: 4242}, false},
		{"known uid, unknown gid", Creds{UID: 1000, GID: 77}, Creds{UID: 1000, GID: 77, User: "alice", Groups: []string{"adm", "alice", "sudo"}}, false},
		{"group database failing", Creds{UID: 1000, GID: 1000}, Creds{UID: 1000, GID: 1000, User: "alice"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewResolver(ResolverConfig{})
			db := newFake()
			db.brokenGroup = tt.broken
			db.install(r)
			got := tt.in
			r.Resolve(&got)
			if got.User != tt.want.User || got.Group != tt.want.Group || !slices.Equal(got.Groups, tt.want.Groups) {
				t.Errorf("Resolve = %+v, want %+v", got, tt.want)
			}
		})
	}
	NewResolver(ResolverConfig{}).Resolve(nil) // must not panic
}

func TestResolverCacheTTL(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	r := NewResolver(ResolverConfig{TTL: 10 * time.Second})
	r.now = func() time.Time { return now }
	db := newFake()
	db.install(r)

	c := Creds{UID: 1000, GID: 1000}
	r.Resolve(&c)
	r.Resolve(&c)
	if db.userCalls != 1 {
		t.Fatalf("user lookups within TTL = %d, want 1", db.userCalls)
	}
	// An unknown uid is cached too: a flood from one unmapped uid must not
	// hit the database on every connection.
	u := Creds{UID: 5, GID: 5}
	r.Resolve(&u)
	r.Resolve(&u)
	if db.userCalls != 2 {
		t.Fatalf("user lookups after unknown uid twice = %d, want 2", db.userCalls)
	}

	db.users["1000"] = "alice2"
	now = now.Add(11 * time.Second)
	r.Resolve(&c)
	if c.User != "alice2" || db.userCalls != 3 {
		t.Fatalf("after TTL: user %q, lookups %d; want alice2, 3", c.User, db.userCalls)
	}
}

func TestResolverBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	r := NewResolver(ResolverConfig{MaxEntries: 4, TTL: time.Hour})
	r.now = func() time.Time { return now }
	newFake().install(r)
	for uid := range uint32(100) {
		now = now.Add(time.Second)
		r.Resolve(&Creds{UID: uid, GID: uid})
		if len(r.users) > 4 || len(r.groups) > 4 {
			t.Fatalf("cache grew past bound: %d users, %d groups", len(r.users), len(r.groups))
		}
	}
	// The newest entry survives eviction; the oldest is gone.
	if _, ok := r.users[99]; !ok {
		t.Error("newest uid evicted")
	}
	if _, ok := r.users[0]; ok {
		t.Error("oldest uid kept")
	}
}

func TestResolverConcurrent(t *testing.T) {
	r := NewResolver(ResolverConfig{MaxEntries: 8})
	newFake().install(r)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				c := Creds{UID: uint32((i + j) % 20), GID: 1000}
				r.Resolve(&c)
			}
		})
	}
	wg.Wait()
}
