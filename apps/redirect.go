package apps

import (
	"net"
	"net/http"
	"strings"
)

// Redirect answers every request with a permanent redirect (308, which keeps
// the method and body) to another origin: what a plain HTTP listener in
// front of a TLS one needs, or a site that moved. The Location is
// Scheme://Host + Base + the path below the mount prefix (the canonical path
// the core produced, so /old mounted at redirect:https://b.test/new sends
// /old/x?q=1 to https://b.test/new/x?q=1) + the query.
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
	path := r.URL.EscapedPath()
	switch {
	case path == "" && rd.Base != "":
		// The mount itself (/old): the base (/new), not the base and a slash.
	case path == "" || path[0] != '/':
		path = "/" + path // an asterisk-form target
	}
	loc := rd.Scheme + "://" + host + rd.Base + path
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	w.Header().Set("Location", loc)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusPermanentRedirect)
	if r.Method != http.MethodHead {
		w.Write([]byte("Moved Permanently: " + loc + "\n"))
	}
}
