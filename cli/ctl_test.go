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
