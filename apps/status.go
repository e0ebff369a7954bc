package apps

import "net/http"

func newStatus(env Env) http.Handler { return http.NotFoundHandler() }

type Metrics struct{}
