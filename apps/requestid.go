package apps

import (
	"net/http"

	"tlsedge/policy"
)

// RequestIDHeader carries a request's id: to the upstream, into the access
// log, and into 5xx answers (see policy.AssignRequestID).
const RequestIDHeader = policy.RequestIDHeader

// RequestIDs gives every request an id before next sees it, as the server's
// request core does (policy.AssignRequestID), for programs that serve the
// apps without it.
func RequestIDs(next http.Handler, trust *policy.Trust) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		policy.AssignRequestID(r, trust)
		next.ServeHTTP(w, r)
	})
}

// RequestID returns r's id ("" when none was assigned).
func RequestID(r *http.Request) string { return policy.RequestID(r) }

// httpError is http.Error for the apps' own 5xx answers: the text, then the
// request id, so a user who reports the error names the log line.
func httpError(w http.ResponseWriter, r *http.Request, text string, code int) {
	if id := RequestID(r); id != "" {
		text += "\nrequest id: " + id
	}
	http.Error(w, text, code)
}
