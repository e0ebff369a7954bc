package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"tlsedge/apps"
)

// check validates the whole configuration without serving: options, mounts,
// and whatever each server's SSL module can check without binding.
func check(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := Load(args, stdout)
	if err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	logs := &accessLogs{stderr: io.Discard, byDest: map[string]*apps.AccessLog{}}
	defer logs.Close()
	e, err := buildEngine(o, log, logs)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range e.Servers() {
		lines, err := s.Check(ctx)
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "configuration OK: %d server(s)\n", len(e.Servers()))
	return nil
}
