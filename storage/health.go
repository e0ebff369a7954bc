package storage

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultMonitorInterval is how often a Monitor asks the database.
const DefaultMonitorInterval = time.Second

// Health is what a Monitor last saw of the database.
type Health struct {
	Up        bool          // the last check answered
	Latency   time.Duration // how long the last check that answered took
	Checked   time.Time     // when the last check ended
	DownSince time.Time     // when the current outage began; zero while up
	Outages   uint64        // outages seen since start: each counted once, however long
	LastError string        // the last check's failure, "" while up
	// Locks are the locks held when the database last answered (stale
	// during an outage: see Checked), from tlsedge_locks.
	Locks []LockInfo
}

// LockInfo is one held lock: its name, the node holding it (its Owner, as
// Postgres.Owner gives it) and when its lease runs out unless renewed.
type LockInfo struct {
	Name    string    `json:"name"`
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// Monitor checks the database every interval with one query (the held
// locks), for the status page and metrics: health, latency, who holds
// which lock. It logs an outage once when it begins and once when it ends,
// never once per failed attempt, and counts it; the rest of tlsedge serves
// from memory meanwhile and the pool reconnects by itself.
type Monitor struct {
	pg     *Postgres
	every  time.Duration
	log    *slog.Logger
	mu     sync.Mutex
	h      Health
	cancel context.CancelFunc
	done   chan struct{}
}

// StartMonitor checks pg now and then every interval (0: the default)
// until Stop.
func StartMonitor(pg *Postgres, interval time.Duration) *Monitor {
	if interval <= 0 {
		interval = DefaultMonitorInterval
	}
	m := &Monitor{pg: pg, every: interval, log: pg.log, done: make(chan struct{}), h: Health{Up: true}}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.check(ctx)
	go m.run(ctx)
	return m
}

// Stop ends the checks.
func (m *Monitor) Stop() {
	m.cancel()
	<-m.done
}

// Health is what the last check saw.
func (m *Monitor) Health() Health {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.h
	h.Locks = append([]LockInfo(nil), h.Locks...)
	return h
}

func (m *Monitor) run(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.check(ctx)
		}
	}
}

// check runs the one query and records what it saw.
func (m *Monitor) check(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, max(m.every, 2*time.Second))
	start := time.Now()
	locks, err := m.pg.Locks(qctx)
	took := time.Since(start)
	cancel()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.h.Checked = now
	if err != nil {
		m.h.LastError = err.Error()
		if m.h.Up {
			m.h.Up, m.h.DownSince = false, now
			m.h.Outages++
			m.log.Error("storage: PostgreSQL unreachable; serving from memory (certificates, session-ticket keys) until it returns", "err", err)
		}
		return
	}
	if !m.h.Up {
		m.log.Info("storage: PostgreSQL reachable again", "down_for", now.Sub(m.h.DownSince).Round(time.Millisecond).String())
	}
	m.h.Up, m.h.DownSince, m.h.LastError = true, time.Time{}, ""
	m.h.Latency, m.h.Locks = took, locks
}

// Locks lists the locks held now (leases not expired), by name.
func (p *Postgres) Locks(ctx context.Context) ([]LockInfo, error) {
	rows, err := p.pool.Query(ctx, `SELECT name, owner, expires FROM tlsedge_locks WHERE expires > now() ORDER BY name`)
	if err != nil {
		if missingTable(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("storage: listing locks: %w", err)
	}
	locks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LockInfo])
	if err != nil {
		return nil, fmt.Errorf("storage: listing locks: %w", err)
	}
	return locks, nil
}
