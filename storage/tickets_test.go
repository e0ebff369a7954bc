package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, SecretSize) }

// TestTicketKeysShared: two nodes on one database read the same ring; the
// ring rotates once the newest key is a rotation old, keeping the previous
// key; each server's ring is its own; the ring is sealed (the stored bytes
// hold no key, and a node with another secret cannot open it and never
// overwrites it).
func TestTicketKeysShared(t *testing.T) {
	ctx := context.Background()
	dsn := pg.DB(t)
	a, b := open(t, dsn, PostgresOptions{}), open(t, dsn, PostgresOptions{})
	ta, err := NewTicketKeys(a, secret(1))
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := NewTicketKeys(b, secret(1))
	const rot = 800 * time.Millisecond

	k1, _, err := ta.TicketKeys(ctx, "main", rot)
	if err != nil || len(k1) != 1 {
		t.Fatalf("first ring: %d keys, %v; want 1", len(k1), err)
	}
	got, age, err := tb.TicketKeys(ctx, "main", rot)
	if err != nil || !slices.Equal(got, k1) || age >= rot {
		t.Fatalf("node b read %d keys (same: %v), age %v, %v; want node a's ring", len(got), slices.Equal(got, k1), age, err)
	}
	other, _, err := tb.TicketKeys(ctx, "other", rot)
	if err != nil || len(other) != 1 || other[0] == k1[0] {
		t.Fatalf("server other's ring: %d keys, same as main's: %v, %v; want its own key", len(other), len(other) > 0 && other[0] == k1[0], err)
	}

	time.Sleep(rot + 100*time.Millisecond)
	k2, _, err := tb.TicketKeys(ctx, "main", rot)
	if err != nil || len(k2) != 2 || k2[1] != k1[0] || k2[0] == k1[0] {
		t.Fatalf("after a rotation period: %d keys, %v; want a new key in front of the previous one", len(k2), err)
	}
	if got, _, _ := ta.TicketKeys(ctx, "main", rot); !slices.Equal(got, k2) {
		t.Fatal("node a did not pick up node b's rotation")
	}
	time.Sleep(rot + 100*time.Millisecond)
	k3, _, _ := ta.TicketKeys(ctx, "main", rot)
	if len(k3) != TicketKeysKept || k3[1] != k2[0] || slices.Contains(k3, k1[0]) {
		t.Fatalf("after two rotations the ring holds %d keys, the first still in: %v; want the first dropped", len(k3), slices.Contains(k3, k1[0]))
	}

	raw, err := a.Load(ctx, ticketKeyPrefix+"main")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range k3 {
		if bytes.Contains(raw, k[:]) {
			t.Fatal("a ticket key is stored in clear")
		}
	}
	wrong, _ := NewTicketKeys(b, secret(2))
	if _, _, err := wrong.TicketKeys(ctx, "main", time.Nanosecond); !errors.Is(err, ErrTicketSecret) {
		t.Fatalf("another secret: %v; want ErrTicketSecret", err)
	}
	if err := wrong.Verify(ctx); !errors.Is(err, ErrTicketSecret) {
		t.Fatalf("Verify with another secret: %v; want ErrTicketSecret", err)
	}
	if err := ta.Verify(ctx); err != nil {
		t.Fatalf("Verify with the ring's secret: %v", err)
	}
	if after, _ := a.Load(ctx, ticketKeyPrefix+"main"); !bytes.Equal(after, raw) {
		t.Fatal("a node with another secret overwrote the ring")
	}
	// A ring moved onto another server's row does not open there.
	if err := a.Store(ctx, ticketKeyPrefix+"moved", raw); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ta.TicketKeys(ctx, "moved", time.Hour); !errors.Is(err, ErrTicketSecret) {
		t.Fatalf("a ring copied to another server's row: %v; want ErrTicketSecret", err)
	}
}

// TestTicketKeysFirstRingRace: nodes asking for a ring that does not exist
// yet, all at once, all get the one ring the winner of its lock made.
func TestTicketKeysFirstRingRace(t *testing.T) {
	dsn := pg.DB(t)
	const n = 4
	var sources []*TicketKeys
	for range n {
		tk, err := NewTicketKeys(open(t, dsn, PostgresOptions{}), secret(3))
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, tk)
	}
	got := make([][][32]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, tk := range sources {
		wg.Go(func() { got[i], _, errs[i] = tk.TicketKeys(context.Background(), "main", time.Hour) })
	}
	wg.Wait()
	keys := map[[32]byte]bool{}
	for i := range n {
		if errs[i] != nil || len(got[i]) != 1 {
			t.Errorf("node %d: %d keys, %v; want the one shared key", i, len(got[i]), errs[i])
			continue
		}
		keys[got[i][0]] = true
	}
	if len(keys) > 1 {
		t.Errorf("the nodes got %d different keys; want one", len(keys))
	}
}

// TestReadSecretFile: hex and base64 are read; short, unreadable-format
// and group- or world-readable files are refused with what to do.
func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	hexKey := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string // "" for success
	}{
		{"hex", hexKey + "\n", 0o600, ""},
		{"base64", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=", 0o400, ""},
		{"short", "abcd", 0o600, "needs at least 32"},
		{"garbage", "not a key!", 0o600, "neither hex nor base64"},
		{"group-readable", hexKey, 0o640, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, tc.mode)
			s, err := ReadSecretFile(p)
			if tc.want == "" {
				if err != nil || len(s) != 32 {
					t.Fatalf("%d bytes, %v", len(s), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v; want an error saying %q", err, tc.want)
			}
		})
	}
}
