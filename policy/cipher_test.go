package policy

import (
	"crypto/tls"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"tlsedge/internal/testenv"
)

func TestCipherStrings(t *testing.T) {
	tests := []struct {
		in   string
		want []string // OpenSSL names, in order
	}{
		{"", []string{"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}},
		{"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1", []string{"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}},
		{"ECDHE-ECDSA-AES128-GCM-SHA256", []string{"ECDHE-ECDSA-AES128-GCM-SHA256"}},
		{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", []string{"ECDHE-RSA-AES128-GCM-SHA256"}},
		{"ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-RSA-AES128-GCM-SHA256,DHE-RSA-AES128-GCM-SHA256", []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"}},
		{"ECDHE+AESGCM:-aECDSA", []string{"ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"}},
		{"ECDHE+AESGCM:-aECDSA:aECDSA+AESGCM", []string{"ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256"}},
		{"ECDHE+AESGCM:!aECDSA:aECDSA+AESGCM", []string{"ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"}},
		{"ECDHE+AESGCM:+AES256", []string{"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"}},
		{"AES128+AESGCM:AES256+AESGCM:@STRENGTH", []string{"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "AES128-GCM-SHA256"}},
		{"HIGH:!aNULL:!MD5:!kRSA:!SHA1:!SHA256", []string{"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"}},
		{"TLS_AES_128_GCM_SHA256:ECDHE+CHACHA20:@SECLEVEL=2", []string{"ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ids, err := CipherSuites(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := CipherSuiteNames(ids); !slices.Equal(got, tt.want) {
				t.Fatalf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestCipherStringErrors(t *testing.T) {
	tests := []struct{ in, token, why string }{
		{"RC4-SHA", "RC4-SHA", "insecure"},
		{"ECDHE+AESGCM:RC4", "RC4", "RC4 is broken"},
		{"DES-CBC3-SHA", "DES-CBC3-SHA", "insecure"},
		{"EDH-RSA-DES-CBC3-SHA", "EDH-RSA-DES-CBC3-SHA", "broken"},
		{"ECDHE-RSA-AES128-GCM-SHA25", "ECDHE-RSA-AES128-GCM-SHA25", "unknown"},
		{"ECDHE+AESGMC", "ECDHE+AESGMC", "unknown"},
		{"aNULL", "aNULL", "no authentication"},
		{"EXPORT:ECDHE", "EXPORT", "export"},
		{"ECDHE+", "ECDHE+", "empty part"},
		{"@FOO", "@FOO", "unknown directive"},
		{"!ALL", "", "selects no cipher suite"},
		{"DHE-RSA-AES128-GCM-SHA256", "", "selects no cipher suite"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseCipherString(tt.in)
			if err == nil || !errors.Is(err, ErrCipherString) || !strings.Contains(err.Error(), tt.why) || !strings.Contains(err.Error(), `"`+tt.token) {
				t.Fatalf("err = %v, want %q naming %q", err, tt.why, tt.token)
			}
		})
	}
	// Several bad tokens are all reported.
	_, err := ParseCipherString("FOO:RC4:BAR")
	for _, tok := range []string{`"FOO"`, `"RC4"`, `"BAR"`} {
		if err == nil || !strings.Contains(err.Error(), tok) {
			t.Errorf("err = %v, want it to name %s", err, tok)
		}
	}
}

func TestDefaultIsForwardSecretAEAD(t *testing.T) {
	ids, err := CipherSuites("")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !ForwardSecretAEAD(id) {
			t.Errorf("default includes %s", tls.CipherSuiteName(id))
		}
	}
}

// TestCipherStringsMatchOpenSSL runs the strings through `openssl ciphers`
// and compares, restricted to the suites Go implements.
func TestCipherStringsMatchOpenSSL(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl", "openssl")
	goNames := map[string]bool{}
	for _, s := range suites {
		goNames[s.name] = true
	}
	for _, in := range []string{
		"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1",
		"HIGH:!aNULL:!MD5",
		"ECDHE:!SHA1",
		"AESGCM",
		"ECDHE+AESGCM:-aECDSA:aECDSA+AESGCM",
		"ECDHE+AESGCM:+AES256",
		"kRSA:!SHA1",
		"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384",
		"aRSA+SHA256",
		"AES256:AES128:!SHA1",
	} {
		t.Run(in, func(t *testing.T) {
			out, err := exec.Command(openssl, "ciphers", in).Output()
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for n := range strings.SplitSeq(strings.TrimSpace(string(out)), ":") {
				if goNames[n] {
					want = append(want, n)
				}
			}
			ids, err := CipherSuites(in)
			if err != nil {
				t.Fatal(err)
			}
			if got := CipherSuiteNames(ids); !slices.Equal(got, want) {
				t.Fatalf("tlsedge %v\nopenssl %v", got, want)
			}
		})
	}
}

func FuzzParseCipherString(f *testing.F) {
	for _, s := range []string{"", "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1", "HIGH:!aNULL:!MD5", "@STRENGTH", "!RC4:-ALL:+AES", "a+b+c:d", "::,,  "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseCipherString(s)
		if err != nil {
			if !errors.Is(err, ErrCipherString) {
				t.Fatalf("error does not wrap ErrCipherString: %v", err)
			}
			return
		}
		if len(sel.Suites) == 0 {
			t.Fatal("success with no suites")
		}
		seen := map[uint16]bool{}
		for _, id := range sel.Suites {
			if seen[id] {
				t.Fatalf("suite %x twice", id)
			}
			seen[id] = true
			for _, su := range suites {
				if su.id == id && su.insecure {
					t.Fatalf("%q selected broken suite %s", s, su.name)
				}
			}
		}
	})
}
