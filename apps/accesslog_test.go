package apps

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tlsedge/peercred"
	"tlsedge/router"
)

// combinedRE is the usual regular expression for Apache's and nginx's
// combined log format (as in goaccess's and fail2ban's patterns): nine
// fields, quoted ones with backslash escapes, and nothing after them.
var combinedRE = regexp.MustCompile(`^(\S+) (\S+) (\S+) \[(\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"\n$`)

// TestAccessLogFormats: combined is the standard format to the byte, parsed
// by the standard expression with nothing left over; extended carries the
// other facts after it; JSON carries them all, with the time and the
// request id.
func TestAccessLogFormats(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "short and stout")
	})
	d := router.NewDispatcher()
	d.Mount("/x", app)
	tests := []struct {
		format string
		check  func(t *testing.T, line string, start time.Time)
	}{
		{"combined", func(t *testing.T, line string, _ time.Time) {
			m := combinedRE.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("combined line %q is not parsed by %s", line, combinedRE)
			}
			want := []string{"unix", "-", "alice", "", `GET /x?\x22q\x22 HTTP/1.1`, "418", "15", "-", `ua \x22quoted\x22 \xC3\xA9`}
			for i, w := range want {
				if i != 3 && m[i+1] != w {
					t.Errorf("field %d = %q, want %q", i+1, m[i+1], w)
				}
			}
			if _, err := time.Parse("02/Jan/2006:15:04:05 -0700", m[4]); err != nil {
				t.Errorf("time %q: %v", m[4], err)
			}
		}},
		{"extended", func(t *testing.T, line string, _ time.Time) {
			re := regexp.MustCompile(`^unix - alice \[[^]]+\] "GET /x\?\\x22q\\x22 HTTP/1.1" 418 15 "-" "ua \\x22quoted\\x22 \\xC3\\xA9" rid=[0-9a-f]{16} route=/x dur=\d+\.\d{6} uid=1000 pid=7\n$`)
			if !re.MatchString(line) {
				t.Errorf("extended line %q does not match %s", line, re)
			}
		}},
		{"json", func(t *testing.T, line string, start time.Time) {
			var e map[string]any
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			for k, want := range map[string]any{"remote_addr": "unix", "user": "alice", "status": 418.0, "bytes": 15.0, "peer_uid": 1000.0,
				"user_agent": `ua "quoted" é`, "uri": `/x?"q"`, "route": "/x", "method": "GET", "proto": "HTTP/1.1"} {
				if e[k] != want {
					t.Errorf("%s = %#v, want %#v", k, e[k], want)
				}
			}
			if id, _ := e["request_id"].(string); !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(id) {
				t.Errorf("request_id %#v", e["request_id"])
			}
			if ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(e["time"])); err != nil || ts.Before(start.Add(-time.Second)) || ts.After(time.Now()) {
				t.Errorf("time %#v: %v", e["time"], err)
			}
			if _, ok := e["duration"].(float64); !ok {
				t.Errorf("duration %#v", e["duration"])
			}
			if strings.Count(line, "\n") != 1 {
				t.Errorf("not one line: %q", line)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			buf := &logBuf{}
			al, err := NewAccessLog(Options{AccessLog: "-", AccessLogFormat: tt.format}, buf)
			if err != nil {
				t.Fatal(err)
			}
			sock := serveUnix(t, RequestIDs(al.Wrap(d), nil), &peercred.Creds{PID: 7, UID: 1000, GID: 1000, User: "alice"})
			req, _ := http.NewRequest("GET", `http://x/x?"q"`, nil)
			req.Header.Set("User-Agent", `ua "quoted" é`)
			start := time.Now()
			resp, err := unixClient(sock).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			line := waitLine(t, buf)
			tt.check(t, line, start)
		})
	}
	if _, err := NewAccessLog(Options{AccessLog: "-", AccessLogFormat: "combined_plus"}, io.Discard); err == nil || !strings.Contains(err.Error(), "access_log_format") {
		t.Errorf("unknown format: %v", err)
	}
}

func TestAccessLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	al, err := NewAccessLog(Options{AccessLog: path, AccessLogFormat: "json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	front := serveTCP(t, al.Wrap(http.NotFoundHandler()))
	get := func(p string) {
		resp, err := http.Get(front + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get("/before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	get("/rotated") // still goes to the renamed file, as with nginx
	if err := al.Reopen(); err != nil {
		t.Fatal(err)
	}
	get("/after")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "/before") || !strings.Contains(string(old), "/rotated") || strings.Contains(string(old), "/after") {
		t.Errorf("rotated file: %s", old)
	}
	if !strings.Contains(string(cur), "/after") || strings.Count(string(cur), "\n") != 1 {
		t.Errorf("new file: %s", cur)
	}
	if al, err := NewAccessLog(Options{}, nil); al != nil || err != nil {
		t.Errorf("off: %v %v", al, err)
	}
	if _, err := NewAccessLog(Options{AccessLog: filepath.Join(dir, "no", "such", "dir")}, nil); err == nil || !strings.Contains(err.Error(), "access_log") {
		t.Errorf("bad path: %v", err)
	}
}

// waitLine waits for the access log line written after the response.
func waitLine(t *testing.T, buf *logBuf) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s := buf.String(); strings.HasSuffix(s, "\n") {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no access log line")
	return ""
}

// TestAccessLogTLS checks the TLS fields: version, cipher, SNI, and the
// verified client certificate's CN as the user.
func TestAccessLogTLS(t *testing.T) {
	ln, ca, client := clientCertListener(t, "log")
	buf := &logBuf{}
	al, err := NewAccessLog(Options{AccessLog: "stderr", AccessLogFormat: "extended"}, buf)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.Replace(serveOn(t, ln, al.Wrap(http.NotFoundHandler()), nil), "http://", "https://", 1)
	addr = strings.Replace(addr, "127.0.0.1", "localhost", 1)
	tests := []struct {
		name  string
		certs []tls.Certificate
		want  string
	}{
		{"anonymous", nil, `^127\.0\.0\.1 - - \[.*\] "GET /t HTTP/1.1" 404 19 "-" "Go-http-client/1.1" rid=- route=- dur=\S+ tls=TLSv1.3 cipher=TLS_\w+ sni=localhost\n$`},
		{"client certificate", []tls.Certificate{client.TLS}, `^127\.0\.0\.1 - client-7 \[.*\] "GET /t HTTP/1.1" 404 .* sni=localhost\n$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf.mu.Lock()
			buf.buf.Reset()
			buf.mu.Unlock()
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, Certificates: tt.certs}}}
			resp, err := c.Get(addr + "/t")
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			if l := waitLine(t, buf); !regexp.MustCompile(tt.want).MatchString(l) {
				t.Errorf("line %q does not match %s", l, tt.want)
			}
		})
	}
}
