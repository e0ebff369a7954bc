package tlsadapter

import (
	"os/exec"
	"strings"
	"testing"
)

// The layers point one way: the terminator and the policy it applies sit
// below the HTTP engine, so neither links it (nor x/net's HTTP/2).
func TestLayersPointOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "tlsedge/policy", "tlsedge/tlsadapter").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		switch dep {
		case "tlsedge/server/httpcore", "golang.org/x/net/http2", "tlsedge/router", "tlsedge/apps", "tlsedge/server":
			t.Errorf("policy or tlsadapter depends on %s", dep)
		}
	}
}
