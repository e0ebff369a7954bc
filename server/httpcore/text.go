package httpcore

import (
	"net/http"
	"strconv"
)

// Text returns the handler of a text:BODY mount: 200 with body as
// text/plain for any method, for health checks and benchmarks. Its header
// values are built once and shared by every response.
func Text(body string) http.Handler {
	return &textHandler{
		body: []byte(body),
		ct:   []string{"text/plain; charset=utf-8"},
		cl:   []string{strconv.Itoa(len(body))},
	}
}

type textHandler struct {
	body   []byte
	ct, cl []string
}

func (t *textHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = t.ct
	h["Content-Length"] = t.cl
	w.Write(t.body)
}
