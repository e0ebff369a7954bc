package tlsadapter

import (
	"cmp"
	"context"
	"crypto/rand"
	"slices"
	"time"
)

// TicketKeySource is a session-ticket key ring shared by the nodes of a
// cluster (engine.storage on PostgreSQL: storage.TicketKeys). Without one,
// each terminator makes its own keys, as a single node needs.
type TicketKeySource interface {
	// TicketKeys returns ring's keys, newest first (the first encrypts new
	// tickets, all decrypt), and how long ago the newest was made,
	// rotating them first when it is rotation old. An error means the
	// ring could not be read: the caller keeps serving the keys it has.
	TicketKeys(ctx context.Context, ring string, rotation time.Duration) (keys [][32]byte, age time.Duration, err error)
}

// ticketPoll is how often a terminator on a shared ring reads it: a
// rotation made on one node reaches the others within this.
func ticketPoll(rotation time.Duration) time.Duration {
	return max(min(time.Second, rotation/4), 50*time.Millisecond)
}

// TicketKeysRotated is when the session-ticket key that encrypts new
// tickets was made (zero without session tickets), and whether it comes
// from a ring shared with the other nodes.
func (t *Terminator) TicketKeysRotated() (when time.Time, shared bool) {
	if n := t.ticketsRotated.Load(); n != 0 {
		when = time.Unix(0, n)
	}
	return when, t.ticketsShared
}

// shareTicketKeys keeps the server's ring from src installed: read every
// ticketPoll, new keys installed as soon as a node rotates them. While the
// ring cannot be read (the database is away) the keys in memory keep
// serving; should the newest of them reach the rotation age meanwhile, a
// key made here takes over for new tickets (the ring's keys are not in
// memory beyond two periods, as without sharing), until the ring answers
// again. first is called once the first read is done, successful or not.
func (t *Terminator) shareTicketKeys(ctx context.Context, src TicketKeySource, ring string, every time.Duration, first func()) {
	defer close(t.rotation)
	var keys [][32]byte
	var born time.Time
	failing := false
	install := func(k [][32]byte, b time.Time) {
		keys, born = k, b
		t.base.SetSessionTicketKeys(keys)
		t.ticketsRotated.Store(born.UnixNano())
	}
	sync := func() {
		sctx, cancel := context.WithTimeout(ctx, max(ticketPoll(every), 2*time.Second))
		got, age, err := src.TicketKeys(sctx, ring, every)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil && len(got) > 0 {
			if failing {
				failing = false
				t.log.Info("session-ticket keys: the shared key ring answers again", "ring", ring)
			}
			if !slices.Equal(got, keys) {
				install(got, time.Now().Add(-age))
			}
			return
		}
		if !failing {
			failing = true
			// Once per failure streak, not once per read.
			t.log.Warn("session-ticket keys: the shared key ring cannot be read; resuming with the keys in memory", "ring", ring, "err", err)
		}
		if len(keys) == 0 || time.Since(born) >= every {
			var k [32]byte
			_, _ = rand.Read(k[:])
			next := append([][32]byte{k}, keys...)
			install(next[:min(len(next), ticketKeysKept)], time.Now())
		}
	}
	sync()
	first()
	tk := time.NewTicker(ticketPoll(every))
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			sync()
		}
	}
}

// startTicketKeys starts the key rotation: on the shared ring when p gives
// one and the server offers tickets, else on keys of its own. On a shared
// ring it returns after the first read, so the first tickets are already
// sealed with the ring's key.
func (t *Terminator) startTicketKeys(ctx context.Context, p Params) {
	every := t.opts.SSLSessionTicketKeyRotation
	if every <= 0 {
		every = defaults.SSLSessionTicketKeyRotation
	}
	if p.TicketKeys == nil || !t.opts.SSLSessionTickets {
		go t.rotateTicketKeys(ctx, every)
		return
	}
	t.ticketsShared = true
	ready := make(chan struct{})
	go t.shareTicketKeys(ctx, p.TicketKeys, cmp.Or(p.Server, "main"), every, func() { close(ready) })
	select {
	case <-ready:
	case <-ctx.Done():
	}
}
