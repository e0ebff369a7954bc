package peercred_test

import (
	"maps"
	"net/http"
	"slices"
	"testing"

	"tlsedge/peercred"
)

func TestStripHeaders(t *testing.T) {
	forged := []string{
		"X-Remote-User", "x-remote-user", "X_Remote_User", "X_REMOTE_USER", "x_remote-user",
		"X-Remote-Uid", "X_Remote_Uid", "X-Remote-Gid", "x_remote_gid", "X-Remote-Pid", "X_REMOTE_PID",
		"X-Remote-Group", "X_Remote_Group", "Remote-User", "REMOTE_USER", "remote_user",
	}
	kept := []string{"X-Remote-Users", "X-Remote-Addr", "Remote-Userx", "User", "X-Forwarded-User", "Authorization"}
	h := http.Header{}
	for _, k := range append(forged, kept...) {
		// Assign directly so non-canonical spellings survive as keys, as
		// they can in a header map built by other code.
		h[k] = append(h[k], "root")
	}
	peercred.StripHeaders(h)
	got := slices.Sorted(maps.Keys(h))
	want := slices.Sorted(slices.Values(kept))
	if !slices.Equal(got, want) {
		t.Errorf("after StripHeaders keys = %q, want %q", got, want)
	}
}

func TestSetHeaders(t *testing.T) {
	tests := []struct {
		name  string
		creds *peercred.Creds
		want  http.Header
	}{
		{"nil only strips", nil, http.Header{}},
		{"numeric only", &peercred.Creds{PID: 7, UID: 1000, GID: 100},
			http.Header{"X-Remote-Pid": {"7"}, "X-Remote-Uid": {"1000"}, "X-Remote-Gid": {"100"}}},
		{"no pid", &peercred.Creds{UID: 0, GID: 0},
			http.Header{"X-Remote-Uid": {"0"}, "X-Remote-Gid": {"0"}}},
		{"resolved", &peercred.Creds{PID: 9, UID: 65534, GID: 65534, User: "nobody", Group: "nogroup"},
			http.Header{"X-Remote-Pid": {"9"}, "X-Remote-Uid": {"65534"}, "X-Remote-Gid": {"65534"},
				"X-Remote-User": {"nobody"}, "Remote-User": {"nobody"}, "X-Remote-Group": {"nogroup"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{
				"X-Remote-User": {"root"}, "X_remote_uid": {"0"}, "Remote_User": {"root"},
				"X-Remote-Pid": {"1", "2"},
			}
			peercred.SetHeaders(h, tt.creds)
			if len(h) != len(tt.want) {
				t.Fatalf("headers = %v, want %v", h, tt.want)
			}
			for k, v := range tt.want {
				if !slices.Equal(h[k], v) {
					t.Errorf("%s = %q, want %q", k, h[k], v)
				}
			}
		})
	}
}

func TestLookupIDs(t *testing.T) {
	tests := []struct {
		in      string
		uid     uint32
		gid     uint32
		wantErr bool
	}{
		{"0", 0, 0, false},
		{"65534", 65534, 65534, false},
		{"root", 0, 0, false},
		{"", 0, 0, true},
		{"no-such-account-tlsedge", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			uid, err := peercred.LookupUID(tt.in)
			if (err != nil) != tt.wantErr || uid != tt.uid {
				t.Errorf("LookupUID(%q) = %d, %v", tt.in, uid, err)
			}
			gid, err := peercred.LookupGID(tt.in)
			if (err != nil) != tt.wantErr || gid != tt.gid {
				t.Errorf("LookupGID(%q) = %d, %v", tt.in, gid, err)
			}
		})
	}
}

// Stripping runs on every request on every listener: it must not allocate.
func TestStripHeadersAllocatesNothing(t *testing.T) {
	h := http.Header{"Host": {"x"}, "User-Agent": {"y"}, "Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "Cookie": {"a=b"}}
	if n := testing.AllocsPerRun(100, func() { peercred.StripHeaders(h) }); n != 0 {
		t.Fatalf("StripHeaders allocated %.0f times per call", n)
	}
}
