package policy_test

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"testing"

	"tlsedge/config"
	"tlsedge/policy"
)

// Every spelling of an edge-owned header goes; look-alikes stay.
func TestStripEdgeHeaders(t *testing.T) {
	identity := []string{
		"X-Remote-User", "x-remote-user", "X_Remote_User", "X_REMOTE_USER", "x_remote-user",
		"X-Remote-Uid", "X_Remote_Uid", "X-Remote-Gid", "x_remote_gid", "X-Remote-Pid", "X_REMOTE_PID",
		"X-Remote-Group", "X_Remote_Group", "X-Remote-Groups", "Remote-User", "REMOTE_USER", "remote_user",
		"X-Ssl-Client-Verify", "X-SSL-Client-S-DN", "X_ssl_client_s_dn", "X_SSL_PROTOCOL", "X-SSL",
		"X-Forwarded-Client-Cert", "x_forwarded_client_cert",
	}
	forwarding := []string{
		"Forwarded", "forwarded", "X-Forwarded-For", "X_Forwarded_For", "x_forwarded_for",
		"X_Forwarded_Proto", "X_Forwarded_Host", "X-Forwarded-Port", "X-Forwarded-Ssl",
		"X-Forwarded-Scheme", "X-Forwarded-Prefix", "X-Real-IP", "X_Real_Ip", "True-Client-IP",
		"X-Client-IP", "Client-IP", "client_ip", "X-Original-Forwarded-For",
	}
	kept := []string{"X-Remote-Users0", "Remote-Userx", "User", "X-Forwarded", "Authorization",
		"X-Sslx", "Forwardedx", "X-Real-IPs", "Host", "Cookie"}
	kept[0] = "Xremote-User"
	for _, tt := range []struct {
		name    string
		trusted bool
		want    []string
	}{
		{"untrusted peer", false, kept},
		{"trusted proxy", true, append(slices.Clone(kept), forwarding...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, k := range slices.Concat(identity, forwarding, kept) {
				// Assign directly so non-canonical spellings survive as
				// keys, as they can in a header map built by other code.
				h[k] = append(h[k], "forged")
			}
			policy.StripEdgeHeaders(h, tt.trusted)
			got := slices.Sorted(maps.Keys(h))
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("kept %q\nwant %q", got, want)
			}
		})
	}
}

// Stripping runs on every request on every listener: it must not allocate.
func TestStripEdgeHeadersAllocatesNothing(t *testing.T) {
	h := http.Header{"Host": {"x"}, "User-Agent": {"y"}, "Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "Cookie": {"a=b"}}
	if n := testing.AllocsPerRun(100, func() { policy.StripEdgeHeaders(h, false) }); n != 0 {
		t.Fatalf("StripEdgeHeaders allocated %.0f times per call", n)
	}
}

func TestParseTrust(t *testing.T) {
	if _, err := policy.ParseTrust([]string{"10.0.0.0/8", "::1", "unix", " 127.0.0.1 "}); err != nil {
		t.Fatal(err)
	}
	_, err := policy.ParseTrust([]string{"10.0.0.0/33", "localhost"})
	var ce *config.Error
	if err == nil || !errorsAs(err, &ce) || ce.Key != "trusted_proxies" || !errors.Is(err, config.ErrBadValue) {
		t.Fatalf("bad entries: %v", err)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
