package tlsadapter

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The layers point one way: listener -> terminator -> core -> router ->
// apps. A package low in the stack never links one above it.
func TestLayersPointOneWay(t *testing.T) {
	for _, tt := range []struct {
		pkgs      []string
		forbidden []string
	}{
		// The terminator and the policy it applies sit below the HTTP
		// engine: neither links it, nor x/net's HTTP/2.
		{[]string{"tlsedge/policy", "tlsedge/tlsadapter"}, []string{
			"tlsedge/server/httpcore", "golang.org/x/net/http2", "tlsedge/router", "tlsedge/apps", "tlsedge/server"}},
		// The connection facts and the accept loop are leaves.
		{[]string{"tlsedge/conninfo", "tlsedge/accept", "tlsedge/config"}, []string{
			"tlsedge/server/httpcore", "tlsedge/tlsadapter", "tlsedge/policy", "tlsedge/apps"}},
		// The engine does not know the router or the apps; the server
		// carries the apps' options without linking the apps.
		{[]string{"tlsedge/server/httpcore"}, []string{"tlsedge/router", "tlsedge/apps", "tlsedge/tlsadapter"}},
		{[]string{"tlsedge/server"}, []string{"tlsedge/apps"}},
	} {
		out, err := exec.Command("go", append([]string{"list", "-deps"}, tt.pkgs...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		deps := strings.Fields(string(out))
		for _, f := range tt.forbidden {
			if slices.Contains(deps, f) {
				t.Errorf("%s depends on %s", strings.Join(tt.pkgs, ", "), f)
			}
		}
	}
}
