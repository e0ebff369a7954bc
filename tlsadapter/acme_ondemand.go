package tlsadapter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// ErrOnDemandRefused is wrapped by on-demand decisions that refuse a name.
var ErrOnDemandRefused = errors.New("tlsadapter: acme: name not allowed on demand")

// ErrOnDemandRate is returned when acme_on_demand_rate orders were already
// placed in the last minute.
var ErrOnDemandRate = errors.New("tlsadapter: acme: on-demand order rate exceeded")

// onDemandPolicy decides which names may get a certificate at handshake time.
// Rules fail closed: with allow rules the name must match one; with an ask
// URL the endpoint must answer 200; with both, both must agree.
type onDemandPolicy struct {
	rules  []allowRule
	ask    string
	client *http.Client
	log    *slog.Logger

	rate   int           // orders per window
	window time.Duration // one minute; a field so tests can shrink it
	mu     sync.Mutex
	recent []time.Time // order times inside the window, oldest first
}

func newOnDemandPolicy(rules []allowRule, ask string, rate int, log *slog.Logger) *onDemandPolicy {
	return &onDemandPolicy{
		rules:  rules,
		ask:    ask,
		client: &http.Client{Timeout: 5 * time.Second},
		log:    log,
		rate:   rate,
		window: time.Minute,
	}
}

// decide is certmagic's OnDemandConfig.DecisionFunc: nil allows name.
func (p *onDemandPolicy) decide(ctx context.Context, name string) error {
	name = strings.ToLower(name)
	if len(p.rules) == 0 && p.ask == "" {
		return fmt.Errorf("%w: %q (no rules)", ErrOnDemandRefused, name)
	}
	if len(p.rules) > 0 && !p.allowed(name) {
		p.log.Info("acme: on-demand name refused by acme_on_demand_allow", "server_name", name)
		return fmt.Errorf("%w: %q matches no acme_on_demand_allow entry", ErrOnDemandRefused, name)
	}
	if p.ask != "" {
		if err := p.askEndpoint(ctx, name); err != nil {
			p.log.Info("acme: on-demand name refused by acme_on_demand_ask", "server_name", name, "err", err)
			return err
		}
	}
	return nil
}

func (p *onDemandPolicy) allowed(name string) bool {
	for _, r := range p.rules {
		if r.match(name) {
			return true
		}
	}
	return false
}

// askEndpoint asks acme_on_demand_ask?domain=name; only 200 allows.
func (p *onDemandPolicy) askEndpoint(ctx context.Context, name string) error {
	u, err := url.Parse(p.ask)
	if err != nil {
		return fmt.Errorf("%w: acme_on_demand_ask: %v", ErrOnDemandRefused, err)
	}
	q := u.Query()
	q.Set("domain", name)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%w: acme_on_demand_ask: %v", ErrOnDemandRefused, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: asking %s: %v", ErrOnDemandRefused, p.ask, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %q: %s answered %s", ErrOnDemandRefused, name, p.ask, resp.Status)
	}
	return nil
}

// allowOrder counts one new on-demand order against acme_on_demand_rate.
// It runs after decide, just before the order reaches the CA.
func (p *onDemandPolicy) allowOrder(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	keep := p.recent[:0]
	for _, t := range p.recent {
		if now.Sub(t) < p.window {
			keep = append(keep, t)
		}
	}
	p.recent = keep
	if len(p.recent) >= p.rate {
		p.log.Warn("acme: on-demand order refused by acme_on_demand_rate", "server_name", name, "rate", p.rate, "window", p.window)
		return fmt.Errorf("%w: %d orders in the last %s (%q)", ErrOnDemandRate, p.rate, p.window, name)
	}
	p.recent = append(p.recent, now)
	return nil
}

func (p *onDemandPolicy) close() { p.client.CloseIdleConnections() }
