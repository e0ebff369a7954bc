package httpcore

import (
	"bytes"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Parking idle h2 connections.
//
// An h2 connection with nothing going on (no stream open, no handler
// running, no header block half read, the writer stopped with nothing
// queued) is parked as an idle HTTP/1.1 keep-alive connection is (see
// parker, conn.idleRead): after idleHotWait in an ordinary read of one byte
// its socket goes into the Core's epoll set, with a timer for
// socket_timeout, and its reader goroutine ends. What the protocol needs
// stays (the HPACK decoder's table, the peer's settings, the windows, the
// stream ids); what an idle connection does not need goes (the read Framer
// and its buffer, the writer's Framer, buffers, wake-up channel and HPACK
// encoder, the stream map, the decoded fields of the last request, the idle
// timer). The Go benchmark BenchmarkIdleConnMemory (idlemem_linux_test.go)
// puts the figures beside HTTP/1.1's.
//
// The reader reads each frame's first byte itself (idleWait), so the one
// place its read may time out is between frames. It is the only goroutine
// that parks a connection; the writer, stopping with the connection idle
// while the reader waits for that byte, gives the wait its deadline
// (pokeReaderLocked), so a connection whose last response went out after
// the reader's check still parks.
//
// The parker's wake runs the reader loop again on a new goroutine (resume),
// with a new read Framer: no header block is open, so the new Framer has
// no CONTINUATION to expect. Its timer, Shutdown, Revoke and Close take a
// parked connection out the same way, to send GOAWAY and close it: as for
// HTTP/1.1, whoever takes the connection out of the parker owns it. A
// connection's state is stateIdle only from the moment its reader decides
// to park until it is taken out, so Shutdown and Revoke claim it with a
// compare-and-swap (claimParked) and the parker's own check refuses a park
// they claimed first.

// Results of idleWait.
type h2idle int

const (
	h2Read   h2idle = iota // read the next frame
	h2Parked               // the connection belongs to the parker now
	h2Over                 // the connection is closing: finish it
)

// idleLocked reports whether the connection has nothing going on, so that
// its reader may park it.
func (sc *h2sconn) idleLocked() bool {
	return len(sc.streams) == 0 && sc.running == 0 && !sc.writing && len(sc.ctrl) == 0 &&
		len(sc.ready) == 0 && !sc.goaway && !sc.closing && !sc.dead
}

// mayPark reports whether the connection can be parked when idle: its
// socket is known and the Core has a parker (made here on first use).
func (sc *h2sconn) mayPark() bool {
	return sc.cn.raw != nil && sc.c.opts.SocketTimeout > idleHotWait && sc.c.idleParker() != nil
}

// idleWait is the reader's step between frames. It reads the next frame's
// first byte itself, exactly one byte and never into a frame, since a read
// that timed out in the middle of one would leave the Framer broken; the
// byte goes back through h2reader before the Framer's next read. While the
// connection has nothing going on that read is bounded by idleHotWait (a
// client that sends its next request at once pays a timed read), and once
// it passes the connection is parked. A connection that becomes idle while
// its reader waits (the writer's last frames went out after the reader's
// check) gets its hot wait from the writer (pokeReaderLocked).
//
// A timed-out read of a tls.Conn is not sticky (crypto/tls treats timeouts
// as temporary), and proves the TLS layer holds no decrypted byte, so the
// socket's readability is the whole truth while parked.
func (sc *h2sconn) idleWait() h2idle {
	p := sc.c.parker.Load() // made by mayPark, never unset
	if p == nil || sc.hasFirst {
		return h2Read
	}
	for {
		sc.mu.Lock()
		if sc.dead || sc.closing {
			sc.mu.Unlock()
			return h2Over
		}
		// Deadlines are set under mu: whoever ends the connection sets its
		// read deadline in the past under mu too, after closing is set, so
		// the reader never undoes it.
		if sc.idleLocked() {
			sc.hot = true
			sc.nc.SetReadDeadline(time.Now().Add(idleHotWait))
		}
		sc.between = true
		sc.mu.Unlock()
		n, err := sc.rd.Read(sc.first[:])
		sc.mu.Lock()
		sc.between = false
		over := sc.dead || sc.closing
		if sc.hot && !over {
			sc.nc.SetReadDeadline(time.Time{})
		}
		sc.hot = false
		switch {
		case n > 0:
			sc.hasFirst = true
			sc.mu.Unlock()
			return h2Read
		case !isTimeout(err):
			sc.mu.Unlock()
			return h2Over // gone, as a failed ReadFrame would find
		case over:
			sc.mu.Unlock()
			return h2Over
		case !sc.idleLocked():
			sc.mu.Unlock()
			continue
		}
		return sc.parkLocked(p)
	}
}

// pokeReaderLocked gives the reader its hot wait when the connection became
// idle while the reader waits for a byte without a deadline.
func (sc *h2sconn) pokeReaderLocked() {
	if sc.between && !sc.hot && sc.idleLocked() {
		sc.hot = true
		sc.nc.SetReadDeadline(time.Now().Add(idleHotWait))
	}
}

// parkLocked hands the idle connection to the parker; it unlocks mu.
func (sc *h2sconn) parkLocked(p *parker) h2idle {
	cn := sc.cn
	if !cn.state.CompareAndSwap(stateActive, stateIdle) {
		sc.mu.Unlock()
		return h2Read // Close got there first: the read fails
	}
	deadline := sc.lastActive.Add(sc.c.opts.SocketTimeout)
	sc.parked = true
	sc.idleTimer.Stop() // checkIdle does nothing while parked
	sc.idleTimer = nil
	sc.dropIdleLocked()
	sc.c.g.connsIdle.Add(1)
	sc.mu.Unlock()
	if p.park(cn, deadline) == parkOK {
		return h2Parked
	}
	// Not parked: claimed meanwhile, closed, past socket_timeout already,
	// or the parker is gone; on with a goroutine, as without a parker.
	sc.unpark()
	if !time.Now().Before(deadline) {
		sc.goAwayIdle()
	}
	if sc.isOver() {
		return h2Over
	}
	return h2Read
}

// dropIdleLocked lets go of what a parked connection does not need. The
// writer is not running (idleLocked), and a writer started while parked
// (Shutdown's GOAWAY) starts after this under mu.
func (sc *h2sconn) dropIdleLocked() {
	sc.fr = nil
	sc.streams = nil
	sc.ctrl = nil
	sc.ready = nil
	sc.hblock = nil
	sc.fields = nil
	sc.wbuf = bytes.Buffer{}
	sc.hbuf = bytes.Buffer{}
	// The writer's Framer keeps a buffer as large as the largest frame it
	// wrote; it, the writer's wake-up channel and the HPACK encoder are
	// made again when the writer starts (writerFramerLocked).
	sc.wfr = nil
	sc.wake = nil
	// The encoder's dynamic table is this end's choice: the new encoder
	// starts empty, and the first header block after the park tells the
	// client so (a table size update to 0, then back), which empties the
	// client's decoder table too. The client's table is the one the
	// protocol makes us keep (the decoder's), and stays. A size the peer
	// set below the default is applied again through tableChange.
	if size := sc.henc.MaxDynamicTableSize(); size < 4096 && !sc.tableChange {
		sc.tableSize, sc.tableChange = size, true
	}
	sc.henc = nil
}

// writerFramerLocked gives the writer back what a park took (see
// dropIdleLocked); kickLocked calls it before it starts the writer.
func (sc *h2sconn) writerFramerLocked() {
	if sc.wfr == nil {
		sc.wfr = http2.NewFramer(&sc.wbuf, nil)
	}
	if sc.wake == nil {
		sc.wake = make(chan struct{}, 1)
	}
	if sc.henc == nil {
		sc.henc = hpack.NewEncoder(&sc.hbuf)
		sc.henc.SetMaxDynamicTableSize(0)
		sc.henc.SetMaxDynamicTableSize(4096)
	}
}

// unpark gives a connection taken out of the parker (or refused by it) what
// its reader needs again.
func (sc *h2sconn) unpark() {
	sc.fr = sc.newReadFramer()
	sc.mu.Lock()
	sc.parked = false
	if sc.streams == nil {
		sc.streams = make(map[uint32]*h2stream)
	}
	sc.idleTimer = time.AfterFunc(sc.c.opts.SocketTimeout/2, sc.checkIdle)
	if sc.dead || sc.closing {
		sc.idleTimer.Stop()
	}
	if len(sc.ctrl) > 0 {
		sc.kickLocked()
	}
	sc.mu.Unlock()
	sc.cn.state.CompareAndSwap(stateIdle, stateActive) // stays stateClosing if claimed
	sc.c.g.connsIdle.Add(-1)
}

// resume runs the reader of a connection taken out of the parker, on the
// caller's goroutine, until the connection ends or is parked again.
// closeNow: the connection is to get GOAWAY and close (its socket_timeout
// passed, or the Core is closing).
func (sc *h2sconn) resume(closeNow bool) {
	sc.unpark()
	if closeNow {
		sc.goAwayIdle()
	}
	if sc.readLoop(false) {
		return
	}
	sc.done()
}

// goAwayIdle is checkIdle's end of a connection quiet for socket_timeout:
// GOAWAY, then the close.
func (sc *h2sconn) goAwayIdle() {
	sc.mu.Lock()
	if !sc.dead && !sc.closing {
		sc.ctrl = append(sc.ctrl, h2ctrl{typ: http2.FrameGoAway, id: sc.maxID, code: http2.ErrCodeNo})
		sc.goaway = true
		sc.closing = true
		sc.nc.SetReadDeadline(aLongTimeAgo)
	}
	sc.kickLocked()
	sc.mu.Unlock()
}

// claimParked takes the connection out of the parker, if it is parked, so
// that it finishes on a goroutine of its own (shutdown queued its GOAWAY).
// A reader on its way to the parker finds the state changed and does not
// park; one the parker woke meanwhile sees the GOAWAY.
func (sc *h2sconn) claimParked() {
	cn := sc.cn
	if !cn.state.CompareAndSwap(stateIdle, stateClosing) {
		return
	}
	if p := sc.c.parker.Load(); p != nil && p.takeConn(cn) {
		go sc.resume(false)
	}
}
