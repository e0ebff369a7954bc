package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Pools, health checks and PROXY protocol are set in a config file like
// every option, checked by `tlsedge check` with errors naming the option,
// and listed by ctl config.
func TestPoolOptionsInConfigFile(t *testing.T) {
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "tlsedge.conf")
		if err := os.WriteFile(p, []byte("[global]\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write(`server.mount = ["/=http://127.0.0.1:9;weight=3 http://127.0.0.1:10 unix:/run/app.sock"]
server.proxy_lb = "cookie:srv"
server.proxy_health_uri = "/healthz"
server.proxy_health_interval = "2s"
server.proxy_health_timeout = "1s"
server.proxy_health_status = "200 204"
server.proxy_health_rise = 3
server.proxy_health_fall = 1
server.proxy_protocol_accept = True
server.proxy_protocol_trusted = "10.0.0.0/8, 192.0.2.1"
`)
	if out, err := runCheck(t, "--config", good); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	o, err := Load([]string{"--config", good}, nil)
	if err != nil {
		t.Fatal(err)
	}
	main := effectiveConfig(o)["server.main"]
	if main["proxy_lb"] != "cookie:srv" || main["proxy_health_fall"] != int64(1) || main["proxy_protocol_accept"] != true {
		t.Fatalf("ctl config shows proxy_lb %v, proxy_health_fall %v, proxy_protocol_accept %v", main["proxy_lb"], main["proxy_health_fall"], main["proxy_protocol_accept"])
	}

	for _, tc := range []struct{ body, want string }{
		{`server.mount = ["/=http://127.0.0.1:9 http://127.0.0.1:10"]` + "\nserver.proxy_lb = \"fastest\"\n", "proxy_lb"},
		{`server.proxy_health_uri = "healthz"` + "\n", "proxy_health_uri"},
		{`server.proxy_health_status = "2x"` + "\n", "proxy_health_status"},
		{"server.proxy_protocol_accept = True\n", "proxy_protocol_trusted"},
		{`server.proxy_protocol_trusted = "10.0.0.0/33"` + "\n", "proxy_protocol_trusted"},
		{`server.mount = ["/=http://127.0.0.1:9;weight=0 http://127.0.0.1:10"]` + "\n", "mount"},
	} {
		out, err := runCheck(t, "--config", write(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: check = %v (%s); want an error naming %s", tc.body, err, out, tc.want)
		}
	}
}
