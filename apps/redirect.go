package apps

import (
	"net"
	"net/http"
	"strings"
)

// Redirect answers every request with a permanent redirect to the same
// request-URI on another origin, which is what a plain HTTP listener in front
// of a TLS one needs. The Location is Scheme://Host + Base + the request-URI
// as the client sent it (mount prefix included).
type Redirect struct {
	Scheme string // "https" or "http"
	// Host is the host[:port] to send clients to. Empty keeps the host the
	// client asked for (without its port), so one redirect serves every
	// virtual host; ":PORT" keeps that host and sets the port.
	Host string
	Base string // path prefix, escaped, without a trailing slash
}

func (rd *Redirect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := rd.Host
	if host == "" || strings.HasPrefix(host, ":") {
		h := r.Host
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
		if h == "" {
			host = ""
		} else {
			host = h + host
		}
	}
	if host == "" || strings.ContainsAny(host, "/\\@?# \t") {
		http.Error(w, "Bad Request: no usable Host", http.StatusBadRequest)
		return
	}
	uri := r.RequestURI
	if uri == "" || uri == "*" || !strings.HasPrefix(uri, "/") {
		// Absolute-form or asterisk-form targets: rebuild from the URL.
		uri = r.URL.RequestURI()
		if !strings.HasPrefix(uri, "/") {
			uri = "/"
		}
	}
	loc := rd.Scheme + "://" + host + rd.Base + uri
	w.Header().Set("Location", loc)
	// 301 for GET and HEAD, which every client follows; 308 otherwise so the
	// method and body are kept.
	code := http.StatusPermanentRedirect
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		code = http.StatusMovedPermanently
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write([]byte("Moved Permanently: " + loc + "\n"))
	}
}
