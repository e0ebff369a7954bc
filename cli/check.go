package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"tlsedge/apps"
	"tlsedge/config"
	"tlsedge/server"
	"tlsedge/storage"
)

// check validates the whole configuration without serving: options, mounts,
// and whatever each server's SSL module can check without binding.
//
// The work runs beside a wait for ctx, which SIGINT and SIGTERM end: reading
// the config file, a certificate or a CA can block (a FIFO as --config, a
// stalled network file system) where nothing looks at ctx, and `tlsedge
// check` must still stop when told to. The abandoned work ends with the
// process.
func check(ctx context.Context, args []string, stdout io.Writer) error {
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- checkConfig(ctx, args, &out) }()
	select {
	case err := <-done:
		stdout.Write(out.Bytes())
		return err
	case <-ctx.Done():
		return fmt.Errorf("check interrupted (%v) before it finished", context.Cause(ctx))
	}
}

func checkConfig(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := Load(args, stdout)
	if err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if err := checkProcessFiles(&o.Process); err != nil {
		return o.Locate(err)
	}
	if err := needKeyFile(o); err != nil {
		return o.Locate(err)
	}
	log := slog.New(slog.DiscardHandler)
	if dsn := o.Process.Storage.DSN(); dsn != "" {
		// The shared storage first: the servers' ACME checks read it.
		checks, err := storage.CheckPostgres(ctx, dsn, storage.PostgresOptions{Logger: log})
		for _, c := range checks {
			fmt.Fprintln(stdout, c)
		}
		if err != nil {
			return config.KeyError("storage", "%s fails its checks (listed above)", o.Process.Storage)
		}
	}
	st, closeStorage, err := openStorage(ctx, o, log, false)
	if err != nil {
		return err
	}
	defer closeStorage()
	if err := checkTicketKeys(ctx, o, st, stdout); err != nil {
		return err
	}
	logs := &accessLogs{stderr: io.Discard, byDest: map[string]*apps.AccessLog{}}
	defer logs.Close()
	e, err := buildEngine(o, &clusterState{storage: st}, log, logs)
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
	for _, w := range server.PolicyWarnings(o.Servers()) {
		fmt.Fprintln(stdout, w)
	}
	fmt.Fprintf(stdout, "configuration OK: %d server(s)\n", len(e.Servers()))
	return nil
}

// checkProcessFiles finds the process files start-up could not create: a
// pidfile or log file in a directory that does not exist.
func checkProcessFiles(p *Process) error {
	var errs []error
	for _, f := range []struct{ key, path string }{{"pidfile", p.Pidfile}, {"log_file", p.LogFile}} {
		if f.path == "" {
			continue
		}
		dir := filepath.Dir(f.path)
		if fi, err := os.Stat(dir); err != nil {
			errs = append(errs, config.KeyError("engine."+f.key, "directory %s: %v (create it, or choose another path)", dir, err))
		} else if !fi.IsDir() {
			errs = append(errs, config.KeyError("engine."+f.key, "%s is not a directory", dir))
		}
	}
	if p.StorageKeyFile != "" {
		if _, err := storage.ReadSecretFile(p.StorageKeyFile); err != nil {
			errs = append(errs, config.KeyError("engine.storage_key_file", "%v", err))
		}
	}
	return errors.Join(errs...)
}
