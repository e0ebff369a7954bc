package httpcore

import (
	"io"
	"testing"
	"time"
)

func TestText(t *testing.T) {
	ts := startServer(t, Text("hello"), nil)
	for _, m := range []string{"GET", "POST", "DELETE", "HEAD"} {
		out, _ := ts.exchange(t, m+" / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 300*time.Millisecond)
		r := parseResponses(t, out, m)[0]
		b, _ := io.ReadAll(r.Body)
		want := "hello"
		if m == "HEAD" {
			want = ""
		}
		if r.StatusCode != 200 || string(b) != want || r.Header.Get("Content-Type") != "text/plain; charset=utf-8" || r.ContentLength != 5 {
			t.Fatalf("%s: %d %q %v", m, r.StatusCode, b, r.Header)
		}
	}
}
