package tlsadapter

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/internal/testenv"
)

// ring is a TicketKeySource a test can take away: while down it fails as a
// database that stopped answering does.
type ring struct {
	mu    sync.Mutex
	keys  [][32]byte
	down  bool
	rings map[string]bool
}

func (r *ring) TicketKeys(_ context.Context, name string, _ time.Duration) ([][32]byte, time.Duration, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rings[name] = true
	if r.down {
		return nil, 0, errors.New("connection refused")
	}
	return r.keys, 0, nil
}

func (r *ring) setDown(d bool) {
	r.mu.Lock()
	r.down = d
	r.mu.Unlock()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSharedTicketKeysAway: a terminator on a shared ring serves the ring's
// keys (under the server's name), keeps them while the ring cannot be read
// (tickets issued before still resume), logs that once, makes a key of its
// own only when the newest one reaches the rotation age, and takes the
// ring's keys back when it answers again.
func TestSharedTicketKeysAway(t *testing.T) {
	ca := testenv.NewCA(t, "ring")
	a := ca.Leaf(t, "a.test")
	src := &ring{keys: [][32]byte{{1}}, rings: map[string]bool{}}
	var logs syncBuf
	o := builtinOpts(a.CertFile, a.KeyFile)
	o.SSLSessionTicketKeyRotation = time.Second
	ad, err := NewRegistry().New(context.Background(), "builtin", Params{Options: o, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Server: "edge", TicketKeys: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ad.Close() })
	s := serve(t, ad)
	src.mu.Lock()
	if !src.rings["edge"] || len(src.rings) != 1 {
		t.Errorf("rings read: %v; want the server's name only", src.rings)
	}
	src.mu.Unlock()
	born, shared := ad.TicketKeysRotated()
	if !shared || born.IsZero() {
		t.Fatalf("TicketKeysRotated = %v, %v; want a time, shared", born, shared)
	}
	cfg := clientCfg(ca, "a.test")
	one := &fixedSession{}
	cfg.ClientSessionCache = one
	if _, cs, err := get(s.addr, cfg); err != nil || cs.DidResume {
		t.Fatalf("first handshake: %v", err)
	}
	// The ticket is sealed with the ring's key: another terminator on the
	// same ring resumes it.
	ad2, err := NewRegistry().New(context.Background(), "builtin", Params{Options: o, Logger: testLogger(t), Server: "edge", TicketKeys: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ad2.Close() })
	s2 := serve(t, ad2)
	if _, cs, err := get(s2.addr, cfg); err != nil || !cs.DidResume {
		t.Fatalf("a ring ticket on another terminator of the ring: resumed=%v, %v", cs != nil && cs.DidResume, err)
	}

	src.setDown(true)
	time.Sleep(500 * time.Millisecond) // two reads fail; still the ring's key
	if now, _ := ad.TicketKeysRotated(); !now.Equal(born) {
		t.Fatal("the keys changed as soon as the ring could not be read")
	}
	if _, cs, err := get(s.addr, cfg); err != nil || !cs.DidResume {
		t.Fatalf("while the ring is away, a ticket from before: resumed=%v, %v", cs != nil && cs.DidResume, err)
	}
	// Past the rotation age a key of its own seals new tickets; the ring's
	// key still opens old ones for the grace period.
	deadline := time.Now().Add(5 * time.Second)
	for now, _ := ad.TicketKeysRotated(); now.Equal(born); now, _ = ad.TicketKeysRotated() {
		if time.Now().After(deadline) {
			t.Fatal("no key of its own 5s after the newest reached the rotation age")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, cs, err := get(s.addr, cfg); err != nil || !cs.DidResume {
		t.Fatalf("after a local rotation, a ticket from before: resumed=%v, %v", cs != nil && cs.DidResume, err)
	}
	if n := strings.Count(logs.String(), "the shared key ring cannot be read"); n != 1 {
		t.Errorf("the failure was logged %d times; want once\n%s", n, logs.String())
	}

	src.setDown(false)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "the shared key ring answers again") {
		if time.Now().After(deadline) {
			t.Fatal("the ring's keys were not taken back within 5s of it answering")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, cs, err := get(s.addr, cfg); err != nil || !cs.DidResume {
		t.Fatalf("the ring back, a ring ticket: resumed=%v, %v", cs != nil && cs.DidResume, err)
	}
}

// fixedSession offers the first session it was given, and only that one.
type fixedSession struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (f *fixedSession) Get(string) (*tls.ClientSessionState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs, f.cs != nil
}

func (f *fixedSession) Put(_ string, cs *tls.ClientSessionState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cs == nil && cs != nil {
		f.cs = cs
	}
}
