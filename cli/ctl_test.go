package cli

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// ctl config gives every value in JSON's own type: switches as booleans,
// counts as numbers, lists as arrays.
func TestEffectiveConfigTypes(t *testing.T) {
	o, err := Load([]string{"--statistics", "--socket-port", "9443", "--mount", "/=text:a, b", "--mount", "/x=text:x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(effectiveConfig(o))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"statistics":true`, `"socket_port":9443`, `"mount":["/=text:a, b","/x=text:x"]`, `"ssl_module":"internal"`, `"trusted_proxies":[]`} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %s:\n%s", want, s)
		}
	}
}

// A reload's log line names what changed, without the values.
func TestChangedKeys(t *testing.T) {
	a, err := Load([]string{"--statistics", "--mount", "/=text:a"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load([]string{"--mount", "/=text:b", "--socket-timeout", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(changedKeys(a, b), " ")
	if got != "server.mount server.socket_timeout server.statistics" {
		t.Fatalf("changed: %q", got)
	}
}
