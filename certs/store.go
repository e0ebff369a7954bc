package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Set is one loaded, checked generation of certificates. It is immutable;
// a reload builds a new Set and swaps it in.
type Set struct {
	Pairs    []*Pair
	Findings []Finding // warnings and notes from the checks that let it load
	Loaded   time.Time
	exact    map[string][]*tls.Certificate // lower-case DNS name or IP -> candidates
	wildcard map[string][]*tls.Certificate // "*.example.com" -> candidates
}

func newSet(pairs []*Pair, fs []Finding, now time.Time) *Set {
	s := &Set{Pairs: pairs, Findings: fs, Loaded: now,
		exact: map[string][]*tls.Certificate{}, wildcard: map[string][]*tls.Certificate{}}
	for _, p := range pairs {
		c := &p.TLS
		for _, n := range p.Leaf().DNSNames {
			n = strings.ToLower(n)
			if strings.HasPrefix(n, "*.") {
				s.wildcard[n] = append(s.wildcard[n], c)
			} else {
				s.exact[n] = append(s.exact[n], c)
			}
		}
		for _, ip := range p.Leaf().IPAddresses {
			s.exact[ip.String()] = append(s.exact[ip.String()], c)
		}
	}
	return s
}

// candidates returns the certificates valid for name: exact matches first,
// then a wildcard one label deep.
func (s *Set) candidates(name string) []*tls.Certificate {
	name = strings.ToLower(name)
	if c := s.exact[name]; len(c) > 0 {
		return c
	}
	if _, rest, ok := strings.Cut(name, "."); ok && rest != "" {
		return s.wildcard["*."+rest]
	}
	return nil
}

// HasName reports whether some certificate covers host (a DNS name or IP).
func (s *Set) HasName(host string) bool { return len(s.candidates(host)) > 0 }

// Certificate picks the certificate for a handshake: among those whose names
// match the SNI, the first the client supports (so an ECDSA and an RSA
// certificate for the same names are chosen by the client's signature
// algorithms). known is false when no certificate matches the name; the
// default (the first pair the client supports, else the first pair) is
// returned then.
func (s *Set) Certificate(hello *tls.ClientHelloInfo) (cert *tls.Certificate, known bool) {
	if hello.ServerName != "" {
		if cands := s.candidates(hello.ServerName); len(cands) > 0 {
			for _, c := range cands {
				if hello.SupportsCertificate(c) == nil {
					return c, true
				}
			}
			return cands[0], true
		}
	}
	anon := *hello
	anon.ServerName = "" // the default is served whatever the name
	for _, p := range s.Pairs {
		if anon.SupportsCertificate(&p.TLS) == nil {
			return &p.TLS, hello.ServerName == ""
		}
	}
	return &s.Pairs[0].TLS, hello.ServerName == ""
}

// Store holds the current Set and reloads it from the files in its Config.
// It is safe for concurrent use.
type Store struct {
	cfg     Config
	log     *slog.Logger
	current atomic.Pointer[Set]
	mu      sync.Mutex // serializes reloads
	onLoad  func(*Set, error)
}

// NewStore loads and checks cfg's files. It fails when any check reports an
// Error, listing all of them; warnings are logged.
func NewStore(cfg Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{cfg: cfg, log: log}
	set, err := s.build()
	if err != nil {
		return nil, err
	}
	s.current.Store(set)
	return s, nil
}

// OnReload registers f to run after each reload attempt with the new Set or
// the error that kept the old one. Call it before Watch or Reload.
func (s *Store) OnReload(f func(*Set, error)) { s.onLoad = f }

// Current returns the Set in use.
func (s *Store) Current() *Set { return s.current.Load() }

func (s *Store) build() (*Set, error) {
	pairs, fs := load(s.cfg)
	if err := FindingsError(fs); err != nil {
		return nil, err
	}
	for _, f := range fs {
		s.log.Warn("certificate check", "finding", f.String())
	}
	return newSet(pairs, fs, s.cfg.now()), nil
}

// Reload parses and checks every file again and swaps the result in. On any
// failure the current certificates stay in use and the error says why.
// Handshakes already under way finish with the Set they started with.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, err := s.build()
	if err != nil {
		s.log.Warn("certificate reload failed; keeping the current certificates", "err", err)
	} else {
		s.current.Store(set)
		s.log.Info("certificates reloaded", "pairs", len(set.Pairs))
	}
	if s.onLoad != nil {
		s.onLoad(set, err)
	}
	return err
}

// fileStamp identifies one version of a file without reading it.
type fileStamp struct {
	ok    bool
	size  int64
	mtime time.Time
	ino   uint64
	dev   uint64
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path) // follows symlinks: Kubernetes secrets swap a ..data link
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{ok: true, size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino, st.dev = uint64(sys.Ino), uint64(sys.Dev)
	}
	return st
}

// Files lists every file the Store reads.
func (s *Store) Files() []string {
	var files []string
	add := func(f string) {
		if f != "" {
			files = append(files, f)
		}
	}
	for _, p := range s.cfg.Pairs {
		add(p.Cert)
		add(p.Key)
		add(p.Chain)
	}
	add(s.cfg.PasswordFile)
	add(s.cfg.TrustBundle)
	for _, f := range s.cfg.Watch {
		add(f)
	}
	return files
}

func (s *Store) stamps() string {
	var b strings.Builder
	for _, f := range s.Files() {
		st := stamp(f)
		fmt.Fprintf(&b, "%s|%v|%d|%d|%d|%d\n", f, st.ok, st.size, st.mtime.UnixNano(), st.ino, st.dev)
	}
	return b.String()
}

// Watch polls the files' size, mtime and inode every interval (zero means
// 1s) and reloads when any changed, until ctx ends. Polling needs no extra
// dependency and sees atomic renames, in-place writes and symlink swaps
// alike. A reload that fails (say the certificate was written but not yet
// the key) is retried at the next change.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	last := s.stamps()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.stamps()
		if now == last {
			continue
		}
		last = now
		s.log.Info("certificate files changed; reloading")
		_ = s.Reload()
	}
}
