package httpcore

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"tlsedge/conninfo"
)

// Shutdown or Revoke reaching an h2 connection before its client preface
// has been read (a reload right after a client's handshake): the server's
// first frame is still its SETTINGS (RFC 9113 section 3.4: a client fails
// a connection whose first frame is anything else, GOAWAY included, rather
// than retrying on a new one), GOAWAY follows, the connection closes, and
// Shutdown returns.
func TestH2ShutdownBeforePreface(t *testing.T) {
	for _, how := range []string{"shutdown", "revoke"} {
		t.Run(how, func(t *testing.T) {
			c := ownCore(t, echoHeader, func(o *Options) { o.RequestHeaderTimeout = 10 * time.Second })
			addr, client := startTLS(t, c)
			cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
			cfg.NextProtos = []string{"h2"}
			cfg.ServerName = "127.0.0.1"
			tc, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			if !waitFor(2*time.Second, func() bool { return c.Stats().H2Connections == 1 }) {
				t.Fatal("the h2 connection is not being served")
			}
			time.Sleep(50 * time.Millisecond) // its reader waits for the preface
			shut := make(chan error, 1)
			switch how {
			case "shutdown":
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					shut <- c.Shutdown(ctx)
				}()
			case "revoke":
				if n := c.Revoke(func(*conninfo.Info) bool { return true }); n != 1 {
					t.Fatalf("revoked %d", n)
				}
			}
			time.Sleep(50 * time.Millisecond)
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(tc, http2.ClientPreface)
			fr := http2.NewFramer(tc, tc)
			fr.WriteSettings()
			var types []http2.FrameType
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					if isTimeout(err) {
						t.Fatalf("connection still open after %s: frames %v", how, types)
					}
					break
				}
				types = append(types, f.Header().Type)
			}
			if len(types) == 0 || types[0] != http2.FrameSettings {
				t.Fatalf("%s before the preface: the server's frames were %v, not SETTINGS first", how, types)
			}
			goaway := false
			for _, ty := range types {
				goaway = goaway || ty == http2.FrameGoAway
			}
			if !goaway {
				t.Fatalf("%s before the preface: no GOAWAY in %v", how, types)
			}
			if how == "shutdown" {
				select {
				case err := <-shut:
					if err != nil {
						t.Fatalf("Shutdown: %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Shutdown did not return")
				}
			}
			if !waitFor(2*time.Second, func() bool { st := c.Stats(); return st.ConnectionsOpen == 0 && st.H2Connections == 0 }) {
				st := c.Stats()
				t.Fatalf("after %s: %d open, %d h2", how, st.ConnectionsOpen, st.H2Connections)
			}
		})
	}
}
