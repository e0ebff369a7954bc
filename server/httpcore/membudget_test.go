package httpcore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A flood of unfinished large heads is bounded in total by
// max_buffered_memory, not only per connection by max_request_header_size:
// 60 connections each send ~490 KB of an unfinished head to a core with a
// 4 MiB budget. The heap stays within the budget and a small constant (it
// grew by the flood's whole 29 MB before the budget), the heads past the
// budget get a 503 with Retry-After and a close, a well-behaved client is
// served meanwhile, and once the flood ends the budget is back to 0.
func TestHeadMemoryBudgetFlood(t *testing.T) {
	const (
		budget  = 4 << 20
		maxHead = 512 << 10
		conns   = 60
		padding = 490_000
	)
	ts := startServer(t, echoHandler(), func(o *Options) {
		o.MaxBufferedMemory = budget
		o.MaxRequestHeaderSize = maxHead
		o.RequestHeaderTimeout = 5 * time.Second
	})
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	head := "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("a", padding) // never finished
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{}
	var retryAfter atomic.Int32
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			go io.WriteString(nc, head) // a refused head is not read to its end
			answer := "no answer"
			if resp, err := http.ReadResponse(bufio.NewReader(nc), nil); err == nil {
				answer = resp.Status
				if resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "" && resp.Close {
					retryAfter.Add(1)
				}
			}
			mu.Lock()
			answers[answer]++
			mu.Unlock()
		}()
	}

	// The heads past the budget are refused within maxHeadWait or two;
	// the others are held until request_header_timeout. (On a loaded
	// machine the refusals may take longer; the heap is bounded anyway.)
	refused := func() uint64 { return ts.core.Stats().MemoryRejections }
	settled := within(4*time.Second, func() bool { return refused() >= conns-budget/maxHead })
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grew := int64(ms.HeapInuse) - int64(base)
	st := ts.core.Stats()
	t.Logf("during the flood: heap in use grew by %d KiB (budget %d KiB); budget in use %d KiB, peak %d KiB; %d waits, %d refused",
		grew>>10, budget>>10, st.BufferedMemory>>10, ts.core.budget.peakBytes()>>10, st.MemoryWaits, st.MemoryRejections)
	if !settled {
		t.Logf("only %d heads refused so far", st.MemoryRejections)
	}
	if grew > budget+4<<20 {
		t.Errorf("heap in use grew by %d KiB during the flood, want at most the budget (%d KiB) + 4 MiB", grew>>10, budget>>10)
	}
	if p := ts.core.budget.peakBytes(); p > budget || st.BufferedMemoryLimit != budget {
		t.Errorf("budget peaked at %d bytes, limit reported %d, want both at most %d", p, st.BufferedMemoryLimit, budget)
	}

	// A well-behaved client is served during the flood.
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + ts.addr + "/ok")
	if err != nil {
		t.Fatalf("a small request during the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("a small request during the flood got %d", resp.StatusCode)
	}

	wg.Wait()
	t.Logf("answers: %v", answers)
	// How many heads are refused rather than timed out depends on how far
	// each had arrived when the budget ran out: a head held back by a
	// starved client holds less than its full size, so more of them fit.
	// When the refusals came in time, every head past the budget's room for
	// full heads was refused; on a starved machine at least one was. Every
	// refusal carries Retry-After and a close.
	want := conns - budget/maxHead
	if !settled {
		want = 1
	}
	if n := answers["503 Service Unavailable"]; n < want || int(retryAfter.Load()) != n {
		t.Errorf("%d heads got 503 (%d with Retry-After and a close), want at least %d, all with both", n, retryAfter.Load(), want)
	}
	if n := answers["503 Service Unavailable"] + answers["408 Request Timeout"]; n != conns {
		t.Errorf("answers %v: want every head refused (503) or timed out (408)", answers)
	}
	if !within(time.Second, func() bool { return ts.core.Stats().BufferedMemory == 0 }) {
		t.Errorf("after the flood the budget holds %d bytes, want 0", ts.core.Stats().BufferedMemory)
	}
	var rej uint64
	for _, r := range ts.core.Stats().Rejections {
		if r.Status == 503 && r.Reason == "memory_budget" {
			rej = r.Count
		}
	}
	if rej != st.MemoryRejections && rej < uint64(conns-budget/maxHead) {
		t.Errorf("rejections list %d memory_budget 503s, want them counted", rej)
	}
}

// Heads larger than headFree are charged while they are read and for as
// long as their exchange lasts, and the charge is gone when it ends, on a
// keep-alive connection, after a refusal and after a hijack.
func TestHeadMemoryBudgetCharges(t *testing.T) {
	inUse := make(chan int64, 1)
	var core atomic.Pointer[Core]
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inUse <- core.Load().budget.InUse()
		if r.URL.Path == "/hijack" {
			nc, _, _ := http.NewResponseController(w).Hijack()
			io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			nc.Close()
		}
	}), func(o *Options) { o.MaxBufferedMemory = 1 << 20 })
	core.Store(ts.core)
	big := "X-Pad: " + strings.Repeat("b", 20_000) + "\r\n"

	for _, tc := range []struct {
		name, req string
		charged   bool // while the handler runs
		status    int
	}{
		{"small", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, 200},
		{"large", "GET / HTTP/1.1\r\nHost: a\r\n" + big + "\r\n", true, 200},
		{"large, then small on the same connection", "GET / HTTP/1.1\r\nHost: a\r\n" + big + "\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", true, 200},
		{"large and refused", "GET / HTTP/1.1\r\n" + big + "\r\n", false, 400},
		{"large and hijacked", "GET /hijack HTTP/1.1\r\nHost: a\r\n" + big + "\r\n", true, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := ts.exchange(t, tc.req, 300*time.Millisecond)
			if got := statusOf(t, out); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if tc.status == 200 {
				if n := <-inUse; (n > 0) != tc.charged || n > 0 && n < int64(len(big)) {
					t.Errorf("budget in use during the handler: %d, want charged %v", n, tc.charged)
				}
			}
			for len(inUse) > 0 {
				<-inUse
			}
			if !within(time.Second, func() bool { return ts.core.budget.InUse() == 0 }) {
				t.Errorf("after the exchange the budget holds %d bytes", ts.core.budget.InUse())
			}
		})
	}
}

func TestBudget(t *testing.T) {
	b := NewBudget(100)
	if !b.TryAcquire(60) || b.TryAcquire(50) || b.InUse() != 60 {
		t.Fatalf("in use %d after 60 and a refused 50", b.InUse())
	}
	if b.AcquireTimeout(101, time.Hour) {
		t.Fatal("more than the whole budget was granted")
	}
	t0 := time.Now()
	if b.AcquireTimeout(50, 50*time.Millisecond) || time.Since(t0) < 50*time.Millisecond {
		t.Fatal("AcquireTimeout did not wait for its timeout")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Acquire(ctx, 50); !errors.Is(err, ErrBudgetExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past the budget: %v", err)
	}
	got := make(chan bool)
	go func() { got <- b.AcquireTimeout(50, 5*time.Second) }()
	time.Sleep(20 * time.Millisecond)
	b.Release(60)
	if !<-got || b.InUse() != 50 {
		t.Fatalf("a waiter was not woken by a release (in use %d)", b.InUse())
	}
	// Waiters are served first come, first served: while one waits for 60,
	// a smaller request that would fit does not overtake it.
	first := make(chan bool)
	go func() { first <- b.AcquireTimeout(60, 5*time.Second) }()
	if !within(time.Second, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 1 }) {
		t.Fatal("the waiter never queued")
	}
	if b.TryAcquire(10) {
		t.Fatal("TryAcquire overtook a waiter")
	}
	b.Release(50)
	if !<-first || b.InUse() != 60 {
		t.Fatalf("the first waiter was not served (in use %d)", b.InUse())
	}
	b.Release(60)
	if u := NewBudget(0); !u.TryAcquire(1<<40) || u.InUse() != 1<<40 || u.Limit() != 0 {
		t.Fatal("an unlimited budget refused or did not count")
	}
	if d := DefaultBufferedMemory(); d < 64<<20 || d > 1<<30 {
		t.Errorf("DefaultBufferedMemory() = %d, want 64 MiB to 1 GiB", d)
	}
}

// After a burst of large releases the Budget returns the heap to the OS
// once, debounced; steady small churn does not.
func TestBudgetReclaim(t *testing.T) {
	var n atomic.Int32
	b := NewBudget(0)
	b.reclaim = func() { n.Add(1) }
	b.delay = 20 * time.Millisecond
	for range 1000 { // steady churn well under reclaimMin
		b.TryAcquire(64 << 10)
		b.Release(64 << 10)
	}
	for range 100 { // a flood: 100 heads of 512 KiB, then their end
		b.TryAcquire(512 << 10)
	}
	for range 100 {
		b.Release(512 << 10)
	}
	if !within(time.Second, func() bool { return n.Load() == 1 }) {
		t.Fatalf("reclaimed %d times after the burst, want 1", n.Load())
	}
	time.Sleep(100 * time.Millisecond)
	if n.Load() != 1 {
		t.Fatalf("reclaimed %d times, want 1", n.Load())
	}
}

func TestMaxBufferedMemoryOption(t *testing.T) {
	for _, tc := range []struct {
		v    int64
		ok   bool
		want int64 // the Core's limit
	}{
		{-1, true, DefaultBufferedMemory()},
		{0, true, 0},
		{512 << 10, true, 512 << 10},
		{1 << 30, true, 1 << 30},
		{1000, false, 0},
		{-2, false, 0},
	} {
		o := DefaultOptions()
		o.MaxBufferedMemory = tc.v
		c, err := New(o)
		if (err == nil) != tc.ok {
			t.Errorf("max_buffered_memory %d: error %v, want ok %v", tc.v, err, tc.ok)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "max_buffered_memory") {
				t.Errorf("error %q does not name the option", err)
			}
			continue
		}
		if c.Budget().Limit() != tc.want || c.Stats().BufferedMemoryLimit != tc.want {
			t.Errorf("max_buffered_memory %d: limit %d, want %d", tc.v, c.Budget().Limit(), tc.want)
		}
	}
	shared := NewBudget(8 << 20)
	o := DefaultOptions()
	o.Budget = shared
	c1, _ := New(o)
	c2, _ := New(o)
	if c1.Budget() != shared || c2.Budget() != shared {
		t.Error("Options.Budget is not shared")
	}
}

// What one h2 connection may hold for a request head is bounded as well: the
// server announces max_request_header_size (plus x/net's allowance of 32
// bytes for each of 10 fields) as MAX_HEADER_LIST_SIZE and enforces it with
// a 431, keeps the HPACK table at the protocol's 4 KiB, and reads frames of
// at most 16 KiB: x/net's default of 1 MiB let every connection keep a
// 1 MiB read buffer after a single large frame.
func TestH2HeaderBlockLimits(t *testing.T) {
	const maxHead = 64 << 10
	c := newCore(t, http.NotFoundHandler(), func(o *Options) { o.MaxRequestHeaderSize = maxHead })
	addr, client := startTLS(t, c)
	cfg := client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	cfg.ServerName = "127.0.0.1"
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(tc, http2.ClientPreface)
	fr := http2.NewFramer(tc, tc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()

	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	for _, want := range []http2.Setting{
		{ID: http2.SettingMaxHeaderListSize, Val: maxHead + 320},
		{ID: http2.SettingHeaderTableSize, Val: 4096},
		{ID: http2.SettingMaxFrameSize, Val: 16 << 10},
	} {
		if got, ok := sf.Value(want.ID); !ok || got != want.Val {
			t.Errorf("server SETTINGS %v = %d (sent: %v), want %d", want.ID, got, ok, want.Val)
		}
	}

	// A header block over the limit, in frames of 16 KiB, gets 431.
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := range 8 {
		enc.WriteField(hpack.HeaderField{Name: "x-pad" + itoa(i), Value: strings.Repeat("p", 10<<10), Sensitive: true})
	}
	block := hb.Bytes()
	const frame = 16 << 10
	first := block[:frame]
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true}); err != nil {
		t.Fatal(err)
	}
	for rest := block[frame:]; len(rest) > 0; {
		n := min(len(rest), frame)
		if err := fr.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no answer to an oversized header block: %v", err)
		}
		if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.StreamID == 1 {
			if st := mh.PseudoValue("status"); st != "431" {
				t.Errorf("oversized header block got status %s, want 431", st)
			}
			return
		}
	}
}

// peakBytes is the most bytes in use since the last reclaim.
func (b *Budget) peakBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}
