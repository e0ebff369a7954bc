package apps

import (
	"bufio"
	"context"
	"fmt"
	"time"

	"tlsedge/apps/appopt"
)

// healthCheck is a pool's active health check (proxy_health_*): every
// interval, each upstream is sent a GET of uri on a connection of its own
// (never one a request could reuse), with Connection: close. An answer
// whose status is in status, within timeout, passes; anything else (no
// connection, a timeout, a malformed answer, another status) fails. fall
// failures in a row take an upstream out of rotation, rise passes in a
// row put it back. Until its first checks an upstream counts as up.
type healthCheck struct {
	uri      string
	interval time.Duration
	timeout  time.Duration
	status   *appopt.StatusSet
	rise     int
	fall     int
}

func newHealthCheck(o *Options) (*healthCheck, error) {
	st, err := appopt.ParseStatusSet(o.ProxyHealthStatus)
	if err != nil {
		return nil, fmt.Errorf("%w: proxy_health_status: %w", ErrBadOption, err)
	}
	return &healthCheck{
		uri: o.ProxyHealthURI, interval: o.HealthInterval(), timeout: o.HealthTimeout(),
		status: st, rise: o.HealthRise(), fall: o.HealthFall(),
	}, nil
}

// runHealth checks every member at once each interval, the first round at
// start, until the pool is closed.
func (pl *pool) runHealth() {
	defer pl.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-pl.stop
		cancel()
	}()
	t := time.NewTicker(pl.health.interval)
	defer t.Stop()
	for {
		pl.checkAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (pl *pool) checkAll(ctx context.Context) {
	done := make(chan struct{}, len(pl.members))
	for _, m := range pl.members {
		go func() {
			err := pl.health.check(ctx, m)
			if ctx.Err() == nil {
				pl.record(m, err)
			}
			done <- struct{}{}
		}()
	}
	for range pl.members {
		<-done
	}
}

// check sends one health request to m.
func (hc *healthCheck) check(ctx context.Context, m *member) error {
	ctx, cancel := context.WithTimeout(ctx, hc.timeout)
	defer cancel()
	var pp []byte
	if m.p.ppPools {
		pp = proxyV2Header(peer{}) // LOCAL: the edge's own connection
	}
	c, err := m.p.up.dial(ctx, "", pp)
	if err != nil {
		return err
	}
	defer c.nc.Close()
	dl, _ := ctx.Deadline()
	c.nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	defer stop()
	req := "GET " + hc.uri + " HTTP/1.1\r\nHost: " + m.p.upstream.Host +
		"\r\nUser-Agent: tlsedge-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	if _, err := c.nc.Write([]byte(req)); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c.nc, 4096)
	var buf []byte
	for range maxInterim + 1 {
		raw, _, err := readHeadLines(br, buf, 16<<10)
		if err != nil {
			return err
		}
		var h respHead
		if err := parseRespHead(string(raw), &h); err != nil {
			return err
		}
		if h.status >= 200 {
			if !hc.status.Has(h.status) {
				return fmt.Errorf("health check %s answered %d", hc.uri, h.status)
			}
			return nil
		}
		buf = raw[:0]
	}
	return badResponse("too many 1xx answers")
}

// record counts a check's outcome and moves m in or out of rotation.
func (pl *pool) record(m *member, err error) {
	hc := pl.health
	if err == nil {
		m.okRun++
		m.failRun = 0
		m.lastErr.Store(nil)
		if m.activeDown.Load() && m.okRun >= hc.rise {
			// Back: the passive failures that marked it down are past.
			m.p.up.succeeded()
			m.activeDown.Store(false)
			pl.log.Info("pool: upstream back in rotation (health checks pass)", "upstream", m.name, "passes", m.okRun)
		}
		return
	}
	msg := err.Error()
	m.lastErr.Store(&msg)
	m.failRun++
	m.okRun = 0
	if !m.activeDown.Load() && m.failRun >= hc.fall {
		m.activeDown.Store(true)
		pl.log.Warn("pool: upstream out of rotation (health checks fail)", "upstream", m.name, "failures", m.failRun, "err", err)
	}
}
