package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"tlsedge/peercred"
	"tlsedge/policy"
)

func TestPeerOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    policy.PeerOptions
		wantErr []string // substrings, each must appear
	}{
		{"zero value", policy.PeerOptions{}, nil},
		{"lists with peercreds", policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"0", " 1000"}, PeercredsAllowGID: []string{"27"},
			PeercredsAllowUser: []string{"alice"}, PeercredsAllowGroup: []string{"wheel"}, PeercredsMountAllow: []string{"/admin=uid:0 group:wheel", "/=user:bob"}}, nil},
		{"lists without peercreds", policy.PeerOptions{PeercredsAllowUID: []string{"0"}}, []string{"peercreds: must be True"}},
		{"resolve without peercreds", policy.PeerOptions{PeercredsResolve: true}, []string{"peercreds_resolve"}},
		{"every bad value reported", policy.PeerOptions{Peercreds: true,
			PeercredsAllowUID:   []string{"root", "-1"},
			PeercredsAllowGID:   []string{"4294967296"},
			PeercredsAllowUser:  []string{""},
			PeercredsAllowGroup: []string{"a b"},
			PeercredsMountAllow: []string{"admin=uid:0", "/x", "/y=", "/z=uid:x bogus:1", "/w=uid:1", "/w/=uid:2"},
		}, []string{
			`peercreds_allow_uid: "root"`, `peercreds_allow_uid: "-1"`, `peercreds_allow_gid: "4294967296"`,
			`peercreds_allow_user: ""`, `peercreds_allow_group: "a b"`,
			`peercreds_mount_allow: "admin=uid:0": prefix must start with /`, `peercreds_mount_allow: "/x": want PREFIX=`,
			`peercreds_mount_allow: "/y=": no terms`, `uid: "x" is not a numeric id`, `term "bogus:1"`,
			`prefix /w given twice`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: nil, want errors")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestPeerPolicyAllow(t *testing.T) {
	// A fixed resolver over the real database: uid 65534 is nobody/nogroup
	// on Debian, uid 4000000000 is unknown everywhere.
	res := peercred.NewResolver(peercred.ResolverConfig{})
	root := &peercred.Creds{PID: 1, UID: 0, GID: 0}
	nobody := &peercred.Creds{PID: 2, UID: 65534, GID: 65534}
	alice := &peercred.Creds{PID: 3, UID: 1000, GID: 1000, User: "alice", Group: "alice", Groups: []string{"alice", "wheel"}}
	ghost := &peercred.Creds{PID: 4, UID: 4000000000, GID: 4000000000}

	tests := []struct {
		name  string
		opts  policy.PeerOptions
		peer  *peercred.Creds
		allow bool
		rule  string
	}{
		{"empty admits anyone", policy.PeerOptions{Peercreds: true}, nobody, true, ""},
		{"empty admits no creds", policy.PeerOptions{Peercreds: true}, nil, true, ""},
		{"uid listed", policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"0"}}, root, true, ""},
		{"uid not listed", policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"0"}}, nobody, false, "peercreds_allow_uid"},
		{"no creds fail closed", policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"0"}}, nil, false, "peercreds_allow_uid"},
		{"gid listed", policy.PeerOptions{Peercreds: true, PeercredsAllowGID: []string{"65534"}}, nobody, true, ""},
		{"lists are OR", policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"0"}, PeercredsAllowGID: []string{"65534"}}, nobody, true, ""},
		{"deny names every list", policy.PeerOptions{Peercreds: true, PeercredsAllowUID: []string{"0"}, PeercredsAllowGroup: []string{"wheel"}}, nobody, false, "peercreds_allow_uid,peercreds_allow_group"},
		{"user resolved by policy", policy.PeerOptions{Peercreds: true, PeercredsAllowUser: []string{"nobody"}}, nobody, true, ""},
		{"group resolved by policy", policy.PeerOptions{Peercreds: true, PeercredsAllowGroup: []string{"nogroup"}}, nobody, true, ""},
		{"supplementary group", policy.PeerOptions{Peercreds: true, PeercredsAllowGroup: []string{"wheel"}}, alice, true, ""},
		{"user not listed", policy.PeerOptions{Peercreds: true, PeercredsAllowUser: []string{"root"}}, alice, false, "peercreds_allow_user"},
		{"unknown uid has no name", policy.PeerOptions{Peercreds: true, PeercredsAllowUser: []string{"nobody"}}, ghost, false, "peercreds_allow_user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := policy.NewPeerPolicy(tt.opts, policy.PeerPolicyConfig{Resolver: res})
			if err != nil {
				t.Fatal(err)
			}
			var before peercred.Creds
			if tt.peer != nil {
				before = *tt.peer
			}
			err = p.Allow(tt.peer)
			if tt.allow {
				if err != nil {
					t.Fatalf("Allow(%v) = %v, want nil", tt.peer, err)
				}
			} else {
				var de *policy.PeerDenyError
				if !errors.As(err, &de) || !errors.Is(err, policy.ErrPeerDenied) {
					t.Fatalf("Allow(%v) = %v, want *PeerDenyError", tt.peer, err)
				}
				if de.Rule != tt.rule {
					t.Errorf("Rule = %q, want %q", de.Rule, tt.rule)
				}
			}
			if tt.peer != nil && (tt.peer.User != before.User || !slices.Equal(tt.peer.Groups, before.Groups)) {
				t.Errorf("Allow changed the caller's creds: %v", tt.peer)
			}
		})
	}
	var nilPolicy *policy.PeerPolicy
	if nilPolicy.Allow(nil) != nil || !nilPolicy.Empty() {
		t.Error("nil policy must allow everything")
	}
}

func TestPeerPolicyAllowPath(t *testing.T) {
	p, err := policy.NewPeerPolicy(policy.PeerOptions{Peercreds: true, PeercredsMountAllow: []string{
		"/admin=uid:0", "/admin/public=uid:0 uid:65534", "/ops/=group:nogroup",
	}}, policy.PeerPolicyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	root := &peercred.Creds{UID: 0, GID: 0}
	nobody := &peercred.Creds{UID: 65534, GID: 65534}
	tests := []struct {
		path  string
		peer  *peercred.Creds
		allow bool
		rule  string
	}{
		{"/", nobody, true, ""},
		{"/administrator", nobody, true, ""},
		{"/admin", nobody, false, "peercreds_mount_allow /admin"},
		{"/admin/", nobody, false, "peercreds_mount_allow /admin"},
		{"/admin/x", nobody, false, "peercreds_mount_allow /admin"},
		{"/x/../admin/x", nobody, false, "peercreds_mount_allow /admin"},
		{"//admin", nobody, false, "peercreds_mount_allow /admin"},
		{"/admin/x", root, true, ""},
		{"/admin/x", nil, false, "peercreds_mount_allow /admin"},
		{"/admin/public/a", nobody, true, ""},
		{"/admin/public/../secret", nobody, false, "peercreds_mount_allow /admin"},
		{"/ops", nobody, true, ""},
		{"/ops/x", root, false, "peercreds_mount_allow /ops"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			err := p.AllowPath(tt.path, tt.peer)
			if tt.allow != (err == nil) {
				t.Fatalf("AllowPath(%q, %v) = %v, want allow=%v", tt.path, tt.peer, err, tt.allow)
			}
			var de *policy.PeerDenyError
			if err != nil && (!errors.As(err, &de) || de.Rule != tt.rule) {
				t.Errorf("err = %v, want rule %q", err, tt.rule)
			}
		})
	}
}
