package peercred_test

import (
	"net/http"
	"slices"
	"testing"

	"tlsedge/peercred"
)

func TestSetHeaders(t *testing.T) {
	tests := []struct {
		name  string
		creds *peercred.Creds
		want  http.Header
	}{
		{"nil sets nothing", nil, http.Header{}},
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
			h := http.Header{}
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
