package cli

import (
	_ "embed"
	"net/http"
)

//go:embed welcome/index.html
var welcomePage []byte

// welcomeHandler serves the page shown at / when nothing is mounted: what
// tlsedge is and how to configure it.
func welcomeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.Error(w, "404 page not found: nothing is mounted here (see /)", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(welcomePage)
	})
}
