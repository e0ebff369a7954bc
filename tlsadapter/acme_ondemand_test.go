package tlsadapter

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestOnDemandAsk(t *testing.T) {
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		switch r.URL.Query().Get("domain") {
		case "ok.example.com":
			w.WriteHeader(http.StatusOK)
		case "slow.example.com":
			time.Sleep(200 * time.Millisecond)
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer srv.Close()
	log := slog.New(slog.DiscardHandler)

	p := newOnDemandPolicy(nil, srv.URL+"/check?token=x", 10, log)
	if err := p.decide(context.Background(), "OK.example.com"); err != nil {
		t.Errorf("allowed name: %v", err)
	}
	if err := p.decide(context.Background(), "no.example.com"); !errors.Is(err, ErrOnDemandRefused) {
		t.Errorf("refused name: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.decide(ctx, "slow.example.com"); !errors.Is(err, ErrOnDemandRefused) {
		t.Errorf("a handshake deadline must refuse, got %v", err)
	}

	// Allow rules and ask together: both must agree; the rules go first so
	// a refused name costs no request.
	rules, _ := compileAllow([]string{"*.example.com"})
	both := newOnDemandPolicy(rules, srv.URL, 10, log)
	before := asked.Load()
	if err := both.decide(context.Background(), "ok.example.net"); err == nil {
		t.Error("name outside the rules allowed")
	}
	if asked.Load() != before {
		t.Error("ask endpoint consulted for a name the rules refuse")
	}
	if err := both.decide(context.Background(), "no.example.com"); err == nil {
		t.Error("name the endpoint refuses allowed")
	}

	// Unreachable endpoint: fail closed.
	down := newOnDemandPolicy(nil, "http://127.0.0.1:1/", 10, log)
	if err := down.decide(context.Background(), "ok.example.com"); !errors.Is(err, ErrOnDemandRefused) {
		t.Errorf("unreachable ask endpoint: %v", err)
	}
	// No rules at all: fail closed.
	if err := newOnDemandPolicy(nil, "", 10, log).decide(context.Background(), "a.example.com"); err == nil {
		t.Error("no rules allowed a name")
	}
}

func TestOnDemandRate(t *testing.T) {
	p := newOnDemandPolicy(nil, "", 2, slog.New(slog.DiscardHandler))
	p.window = 100 * time.Millisecond
	for i := range 2 {
		if err := p.allowOrder("a"); err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
	}
	if err := p.allowOrder("a"); !errors.Is(err, ErrOnDemandRate) {
		t.Fatalf("third order: %v", err)
	}
	time.Sleep(120 * time.Millisecond)
	if err := p.allowOrder("a"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}
