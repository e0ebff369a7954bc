package apps

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"tlsedge/policy"
)

var freshID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// TestRequestIDTrust sends X-Request-Id over real sockets through the proxy:
// a trusted proxy's well-formed id is kept, logged and passed upstream; from
// an untrusted peer, or malformed, or doubled, it is replaced by a fresh id,
// which is logged and passed upstream instead; the underscore spelling never
// reaches the upstream.
func TestRequestIDTrust(t *testing.T) {
	up := serveTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Join(r.Header.Values("X-Request-Id"), ",")+"|"+strings.Join(r.Header.Values("X_Request_Id"), ","))
	}))
	trusted, _ := policy.ParseTrust([]string{"127.0.0.1"})
	elsewhere, _ := policy.ParseTrust([]string{"10.0.0.0/8", "unix"})
	tests := []struct {
		name   string
		trust  *policy.Trust
		header map[string][]string
		want   string // "" for a fresh id
	}{
		{"trusted proxy's id kept", trusted, map[string][]string{"X-Request-Id": {"edge-1:abc/DEF+0="}}, "edge-1:abc/DEF+0="},
		{"untrusted peer's id replaced", elsewhere, map[string][]string{"X-Request-Id": {"chosen-by-client"}}, ""},
		{"no trust list", nil, map[string][]string{"X-Request-Id": {"chosen-by-client"}}, ""},
		{"none sent", trusted, nil, ""},
		{"trusted but malformed", trusted, map[string][]string{"X-Request-Id": {`a b"c`}}, ""},
		{"trusted but too long", trusted, map[string][]string{"X-Request-Id": {strings.Repeat("a", 129)}}, ""},
		{"trusted but twice", trusted, map[string][]string{"X-Request-Id": {"one", "two"}}, ""},
		{"trusted, with an underscore twin", trusted, map[string][]string{"X-Request-Id": {"one"}, "X_Request_Id": {"two"}}, ""},
		{"underscore spelling only", trusted, map[string][]string{"X_Request_Id": {"sneaky"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := &logBuf{}
			al, err := NewAccessLog(Options{AccessLog: "-", AccessLogFormat: "json"}, buf)
			if err != nil {
				t.Fatal(err)
			}
			front := serveTCP(t, RequestIDs(al.Wrap(mustNew(t, up, Env{})), tt.trust))
			req, _ := http.NewRequest("GET", front+"/", nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got, twin, _ := strings.Cut(string(body), "|")
			if twin != "" {
				t.Errorf("the upstream got X_Request_Id %q", twin)
			}
			if tt.want != "" && got != tt.want || tt.want == "" && !freshID.MatchString(got) {
				t.Errorf("upstream got X-Request-Id %q, want %q (or a fresh id)", got, tt.want)
			}
			var e struct {
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal([]byte(waitLine(t, buf)), &e); err != nil || e.RequestID != got {
				t.Errorf("logged request_id %q (%v), upstream got %q", e.RequestID, err, got)
			}
		})
	}
}

// TestRequestIDInErrorBody: the apps' own 5xx answers name the request id.
func TestRequestIDInErrorBody(t *testing.T) {
	front := serveTCP(t, RequestIDs(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpError(w, r, "Internal Server Error", http.StatusInternalServerError)
	}), nil))
	resp, err := http.Get(front + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`^Internal Server Error\nrequest id: [0-9a-f]{16}\n$`).Match(body) {
		t.Errorf("body %q", body)
	}
}

// TestRequestIDAllocs: a fresh id costs the string and its header slice.
func TestRequestIDAllocs(t *testing.T) {
	h := RequestIDs(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), nil)
	r := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	seen := map[string]bool{}
	if n := testing.AllocsPerRun(100, func() {
		h.ServeHTTP(w, r)
	}); n > 2 {
		t.Errorf("%v allocations per request", n)
	}
	for range 1000 {
		h.ServeHTTP(w, r)
		seen[RequestID(r)] = true
	}
	if len(seen) != 1000 {
		t.Errorf("%d distinct ids in 1000", len(seen))
	}
}
