package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"tlsedge/internal/unixsock"
	"tlsedge/peercred"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// ErrSocketInUse is returned by Listen when another process serves the
// socket path already.
var ErrSocketInUse = errors.New("control: socket in use by another process")

// Callbacks are the actions the control API exposes; the server owns them.
// A nil callback makes its endpoint answer 501.
type Callbacks struct {
	// Stats returns a JSON-encodable snapshot for GET /stats.
	Stats func() any
	// Reload re-reads configuration and certificates for POST /reload; on
	// error the old state must stay in force. ctx is cancelled after
	// Config.ReloadTimeout or if the client goes away.
	Reload func(ctx context.Context) error
	// Stop begins a graceful shutdown for POST /stop. It is called on its
	// own goroutine after the response is sent and may shut this control
	// server down too.
	Stop func()
	// Config returns the effective configuration for GET /config; Redact
	// is applied to it before it is sent.
	Config func() any
	// Explain judges the client described by the query parameters of GET
	// /policy/explain (server, sni, host, method, path, src, cert as PEM,
	// uid, gid, exe) against the live configuration, as
	// `tlsedge policy explain` does against a file.
	Explain func(q url.Values) (any, error)
}

// Config configures a Server. Options and Callbacks are required; the rest
// has working zero values.
type Config struct {
	Options   Options
	Callbacks Callbacks
	// ReloadTimeout bounds one Reload call. Zero means 60s.
	ReloadTimeout time.Duration
	// Logger receives refused connections and failed actions. Nil discards.
	Logger *slog.Logger
}

// Limits of the admin API. Requests carry no body; the limit only stops a
// client from making the server read one.
const (
	maxBodyBytes         = 4 << 10
	maxHeaderBytes       = 16 << 10
	readHeaderTimeout    = 5 * time.Second
	idleTimeout          = 30 * time.Second
	defaultReloadTimeout = 60 * time.Second
)

// Server serves the control API. Build it with New; it is safe for
// concurrent use.
type Server struct {
	opts    Options
	cb      Callbacks
	uids    []uint32
	gids    []uint32
	reloadT time.Duration
	log     *slog.Logger
	http    *http.Server
}

// New validates cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if err := cfg.Options.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Options.Enabled() {
		return nil, errors.New("control: control_socket is empty")
	}
	s := &Server{opts: cfg.Options, cb: cfg.Callbacks, reloadT: cfg.ReloadTimeout, log: cfg.Logger}
	s.uids, _ = parseIDs("control_allow_uid", cfg.Options.ControlAllowUID)
	s.gids, _ = parseIDs("control_allow_gid", cfg.Options.ControlAllowGID)
	if s.reloadT <= 0 {
		s.reloadT = defaultReloadTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// Methods are checked by hand rather than with "GET /stats" patterns:
	// with a catch-all "/" route, ServeMux would answer 404 instead of 405
	// for a wrong method.
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", only(http.MethodGet, s.handleStats))
	mux.HandleFunc("/config", only(http.MethodGet, s.handleConfig))
	mux.HandleFunc("/reload", only(http.MethodPost, s.handleReload))
	mux.HandleFunc("/stop", only(http.MethodPost, s.handleStop))
	mux.HandleFunc("/policy/explain", only(http.MethodGet, s.handleExplain))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{"no such endpoint; try GET /stats, GET /config, POST /reload, POST /stop"})
	})
	s.http = &http.Server{
		Handler:           limitBody(mux),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout + 5*time.Second,
		WriteTimeout:      s.reloadT + 10*time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Listen creates the control socket. For a path it removes a stale socket
// file left by a crashed process (but fails with ErrSocketInUse if something
// still answers on it, and refuses to remove anything that is not a socket),
// binds, and sets the mode: 0600 when only root is allowed, 0666 when
// allow-lists are set. A name starting with '@' is a Linux abstract socket
// and has no file.
func (s *Server) Listen() (net.Listener, error) {
	path := s.opts.ControlSocket
	if !strings.HasPrefix(path, "@") {
		if err := removeStale(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: listening on %s: %w", path, err)
	}
	if !strings.HasPrefix(path, "@") {
		mode := fs.FileMode(0o600)
		if len(s.uids)+len(s.gids) > 0 {
			mode = 0o666
		}
		if err := os.Chmod(path, mode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control: chmod %s: %w", path, err)
		}
	}
	return ln, nil
}

func removeStale(path string) error {
	err := unixsock.RemoveStale(path)
	if errors.Is(err, unixsock.ErrInUse) {
		return fmt.Errorf("%w: %s", ErrSocketInUse, path)
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	return nil
}

// Serve answers control requests on ln until Shutdown or Close, then
// returns ErrServerClosed. Each connection's peer credentials are checked at
// accept; a refused peer is closed unread and logged.
func (s *Server) Serve(ln net.Listener) error {
	return s.http.Serve(&peerListener{Listener: ln, s: s})
}

// Shutdown stops accepting, waits for in-flight requests until ctx ends and
// closes the listener, which unlinks the socket file Listen created.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Close stops the server at once.
func (s *Server) Close() error { return s.http.Close() }

// allowed is the access rule: root always, then the allow-lists. The gid is
// the client's effective gid as the kernel reported it; supplementary
// groups are not consulted, so a control_allow_gid grant cannot be obtained
// by editing group membership alone without a new login.
func (s *Server) allowed(c *peercred.Creds) bool {
	return c.UID == 0 || slices.Contains(s.uids, c.UID) || slices.Contains(s.gids, c.GID)
}

type peerListener struct {
	net.Listener
	s *Server
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		creds, err := peercred.Get(c)
		switch {
		case err != nil:
			l.s.log.Warn("control: refusing connection without peer credentials", "err", err)
		case !l.s.allowed(creds):
			l.s.log.Warn("control: refusing peer not in control_allow_uid/control_allow_gid", "peer", creds)
		default:
			return c, nil
		}
		c.Close()
	}
}

type errorBody struct {
	Error string `json:"error"`
}

type statusBody struct {
	Status string `json:"status"`
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	if s.cb.Stats == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody{"stats not available"})
		return
	}
	writeJSON(w, http.StatusOK, s.cb.Stats())
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	if s.cb.Config == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody{"config not available"})
		return
	}
	v, err := Redact(s.cb.Config())
	if err != nil {
		s.log.Error("control: config", "err", err)
		writeJSON(w, http.StatusInternalServerError, errorBody{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleExplain(w http.ResponseWriter, r *http.Request) {
	if s.cb.Explain == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody{"explain not available"})
		return
	}
	v, err := s.cb.Explain(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if s.cb.Reload == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody{"reload not available"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.reloadT)
	defer cancel()
	if err := s.cb.Reload(ctx); err != nil {
		s.log.Warn("control: reload failed", "err", err)
		writeJSON(w, http.StatusInternalServerError, errorBody{"reload failed: " + err.Error()})
		return
	}
	s.log.Info("control: reloaded")
	writeJSON(w, http.StatusOK, statusBody{"reloaded"})
}

func (s *Server) handleStop(w http.ResponseWriter, r *http.Request) {
	if s.cb.Stop == nil {
		writeJSON(w, http.StatusNotImplemented, errorBody{"stop not available"})
		return
	}
	s.log.Info("control: stop requested")
	writeJSON(w, http.StatusAccepted, statusBody{"stopping"})
	_ = http.NewResponseController(w).Flush()
	// After the handler: Stop may shut this server down, which waits for
	// this very request to finish.
	go s.cb.Stop()
}

// only answers 405 to any method but m (and HEAD for GET).
func only(m string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m && !(m == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", m)
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{"use " + m})
			return
		}
		h(w, r)
	}
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{"request body too large"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{"encoding response: " + err.Error()})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
