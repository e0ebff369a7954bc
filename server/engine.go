package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Engine runs several Servers together: the main one and named extras (the
// seeds' subscribe/unsubscribe). Its methods are safe for concurrent use.
type Engine struct {
	mu      sync.Mutex
	servers []*Server
}

// Subscribe adds s to the engine. A running engine does not start it: call
// s.Start, or subscribe before Engine.Start.
func (e *Engine) Subscribe(s *Server) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.Contains(e.servers, s) {
		e.servers = append(e.servers, s)
	}
}

// Unsubscribe removes s from the engine without stopping it.
func (e *Engine) Unsubscribe(s *Server) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.servers = slices.DeleteFunc(e.servers, func(x *Server) bool { return x == s })
}

// Servers lists the subscribed servers in subscription order.
func (e *Engine) Servers() []*Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.servers)
}

// Start binds every server, in order, then runs beforeServe (if not nil; to
// drop privileges, say), then starts them all accepting. If any step fails,
// the servers already bound are stopped and the error is returned.
func (e *Engine) Start(ctx context.Context, beforeServe func() error) error {
	servers := e.Servers()
	var bound []*Server
	fail := func(err error) error {
		for _, s := range slices.Backward(bound) {
			s.Stop(ctx)
		}
		return err
	}
	for _, s := range servers {
		if err := s.Listen(ctx); err != nil {
			return fail(err)
		}
		bound = append(bound, s)
	}
	if beforeServe != nil {
		if err := beforeServe(); err != nil {
			return fail(err)
		}
	}
	for _, s := range servers {
		if err := s.Start(ctx); err != nil {
			return fail(err)
		}
	}
	return nil
}

// Stop stops every server at once and returns when all are stopped.
func (e *Engine) Stop(ctx context.Context) error {
	servers := e.Servers()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { errs[i] = s.Stop(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Reload reloads every running server's SSL adapter; a failure leaves that
// server serving what it had.
func (e *Engine) Reload(ctx context.Context) error {
	var errs []error
	for _, s := range e.Servers() {
		if !s.Ready() {
			continue
		}
		if err := s.Reload(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server %s: %w", s.displayName(), err))
		}
	}
	return errors.Join(errs...)
}

// Wait blocks until any server stops by itself (an accept error) or ctx ends,
// and returns that server's error, or ctx.Err().
func (e *Engine) Wait(ctx context.Context) error {
	servers := e.Servers()
	ch := make(chan error, len(servers))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, s := range servers {
		go func() { ch <- s.Wait(wctx) }()
	}
	select {
	case err := <-ch:
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) displayName() string {
	if name := s.Config().Name; name != "" {
		return name
	}
	return "main"
}
