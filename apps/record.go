package apps

import (
	"bufio"
	"io"
	"net"
	"net/http"

	"tlsedge/router"
)

// recorder wraps a ResponseWriter to learn the status and body size a
// handler sent, for metrics and the access log. It keeps the wrapped
// writer's abilities reachable: Unwrap for http.ResponseController (flush,
// hijack, deadlines), and ReadFrom so static files still go out through
// sendfile. The dispatcher tells it the mount that served the request
// (router.RouteRecorder).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	route  string // the mount prefix; "" until the dispatcher routes
	// upstream is the address of the upstream that answered, for the access
	// log; the proxy tells it through upstreamRecorder.
	upstream string
	// policy is the server.policy decision for the request ("allow" or
	// "deny") and the deciding rule's number (0: the default); the server's
	// guard tells it through SetPolicy.
	policy     string
	policyRule int
}

// SetPolicy records the request's server.policy decision for the access log.
func (w *recorder) SetPolicy(action string, rule int) { w.policy, w.policyRule = action, rule }

// upstreamRecorder is the hook through which the proxy names the upstream
// address that answered a request (e.g. from httptrace's GotConn), for the
// access log. The proxy does not call it yet.
type upstreamRecorder interface {
	setUpstream(addr string)
}

var _ upstreamRecorder = (*recorder)(nil)

func (w *recorder) setUpstream(addr string) { w.upstream = addr }

var _ router.RouteRecorder = (*recorder)(nil)

// SetRoute implements router.RouteRecorder.
func (w *recorder) SetRoute(prefix string) { w.route = prefix }

func (w *recorder) WriteHeader(code int) {
	// 1xx other than 101 are interim answers; the final status follows.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

// Flush serves callers that type-assert http.Flusher rather than using a
// ResponseController.
func (w *recorder) Flush() {
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack records an upgrade: the handler writes its 101 on the raw
// connection, never through WriteHeader.
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finalStatus is what the handler answered; a handler that wrote nothing
// answered 200.
func (w *recorder) finalStatus() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// writerOnly hides every method but Write, so io.Copy cannot loop back into
// ReadFrom.
type writerOnly struct{ io.Writer }
