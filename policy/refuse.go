package policy

import (
	"io"
	"net/http"
)

// Refuse answers a request the edge turns away (a rule's 403, a quota's
// 429, a misdirected 421) the one way every such answer is written: a short
// plain-text line that no browser may sniff into a page or cache, after
// whatever fields the caller set (Retry-After).
func Refuse(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}
