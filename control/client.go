package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// ErrUsage is wrapped by Ctl's error for a bad command line.
var ErrUsage = errors.New("usage: tlsedge ctl [--control-socket PATH] stats|reload|stop|config|explain")

// Client talks to a control Server over its UNIX socket, one connection per
// request. It speaks HTTP/1.1 directly on the connection instead of going
// through http.Transport, so that a server closing an unauthorised peer
// surfaces as the plain EOF or reset it is, which explain can recognise.
type Client struct {
	socket  string
	timeout time.Duration
}

// NewClient returns a Client for the socket at path (or @name).
func NewClient(path string) *Client {
	return &Client{socket: path, timeout: defaultReloadTimeout + 5*time.Second}
}

// APIError is a non-2xx answer from the control server.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the server's "error" field, or the raw body
}

func (e *APIError) Error() string {
	return fmt.Sprintf("control: server answered %d: %s", e.Status, e.Message)
}

// Do sends method to endpoint (e.g. "GET", "/stats") and returns the JSON
// body of a 2xx answer. Other answers are an *APIError. The request is
// bounded by ctx and by a 65s ceiling (longer than the server's reload
// timeout).
func (c *Client) Do(ctx context.Context, method, endpoint string) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://control"+endpoint, nil)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	req.Close = true
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return nil, c.explain(err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// Unblock reads and writes if ctx is cancelled before the deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := req.Write(conn); err != nil {
		return nil, c.explain(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, c.explain(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("control: reading answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var eb errorBody
		if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
			return nil, &APIError{Status: resp.StatusCode, Message: eb.Error}
		}
		return nil, &APIError{Status: resp.StatusCode, Message: string(bytes.TrimSpace(body))}
	}
	return body, nil
}

// explain turns the transport errors an operator meets into advice. The
// server closes an unauthorised peer without answering, which a client sees
// as EOF or a reset.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("control: %s closed the connection: uid %d / gid %d is probably not in control_allow_uid or control_allow_gid: %w",
			c.socket, os.Geteuid(), os.Getegid(), err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, os.ErrPermission):
		return fmt.Errorf("control: no permission to connect to %s (only root unless control_allow_uid/control_allow_gid are set): %w", c.socket, err)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("control: nothing is serving %s (is tlsedge running with control_socket set?): %w", c.socket, err)
	}
	return fmt.Errorf("control: %s: %w", c.socket, err)
}

// Stats returns GET /stats.
func (c *Client) Stats(ctx context.Context) (json.RawMessage, error) {
	return c.Do(ctx, http.MethodGet, "/stats")
}

// Config returns GET /config (already redacted by the server).
func (c *Client) Config(ctx context.Context) (json.RawMessage, error) {
	return c.Do(ctx, http.MethodGet, "/config")
}

// Reload asks the server to reload and waits for the outcome.
func (c *Client) Reload(ctx context.Context) error {
	_, err := c.Do(ctx, http.MethodPost, "/reload")
	return err
}

// Stop asks the server to shut down gracefully; it returns once the request
// is accepted, not when the server has exited.
func (c *Client) Stop(ctx context.Context) error {
	_, err := c.Do(ctx, http.MethodPost, "/stop")
	return err
}

// command maps a ctl subcommand to its request.
func command(name string) (method, endpoint string, ok bool) {
	switch name {
	case "stats":
		return http.MethodGet, "/stats", true
	case "config":
		return http.MethodGet, "/config", true
	case "reload":
		return http.MethodPost, "/reload", true
	case "stop":
		return http.MethodPost, "/stop", true
	case "explain": // GET / on the main server; tlsedge ctl explain adds the client's facts
		return http.MethodGet, "/policy/explain", true
	}
	return "", "", false
}

// Ctl runs `tlsedge ctl <command>` against the control socket at socketPath:
// args are what follows "ctl" on the command line, exactly one of stats,
// reload, stop or config. The server's JSON answer is written to stdout.
// A bad command line returns an error wrapping ErrUsage; a refused or failed
// request returns the client error (an *APIError for a non-2xx answer).
func Ctl(ctx context.Context, socketPath string, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("control: %w", ErrUsage)
	}
	method, endpoint, ok := command(args[0])
	if !ok {
		return fmt.Errorf("control: unknown command %q: %w", args[0], ErrUsage)
	}
	if socketPath == "" {
		return errors.New("control: no control socket: set control_socket or pass --control-socket")
	}
	body, err := NewClient(socketPath).Do(ctx, method, endpoint)
	if err != nil {
		return err
	}
	if _, err := stdout.Write(body); err != nil {
		return fmt.Errorf("control: writing output: %w", err)
	}
	return nil
}
