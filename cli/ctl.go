package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"sync"

	"github.com/spf13/pflag"

	"tlsedge/config"
	"tlsedge/control"
	"tlsedge/server"
	"tlsedge/tlsadapter"
)

// startControl binds the control socket and serves its JSON API: statistics,
// reload, stop and the effective configuration, for root and the allowed
// uids and gids only.
// reload is the command's reload; mu guards o, which a reload replaces.
func startControl(o *Options, e *server.Engine, log *slog.Logger, stop chan<- struct{}, reload func(context.Context) error, mu *sync.Mutex) (*control.Server, error) {
	cs, err := control.New(control.Config{
		Options: o.Process.Control,
		Logger:  log,
		Callbacks: control.Callbacks{
			Stats:  func() any { return engineStats(e) },
			Reload: reload,
			Stop: func() {
				select {
				case stop <- struct{}{}:
				default:
				}
			},
			Config: func() any {
				mu.Lock()
				defer mu.Unlock()
				return effectiveConfig(o)
			},
			Explain: func(v url.Values) (any, error) {
				q, err := explainQueryOf(v)
				if err != nil {
					return nil, err
				}
				mu.Lock()
				cfgs := o.Servers()
				mu.Unlock()
				return server.Explain(cfgs, *q)
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("control_socket: %w", err)
	}
	ln, err := cs.Listen()
	if err != nil {
		return nil, fmt.Errorf("control_socket: %w", err)
	}
	go cs.Serve(ln)
	return cs, nil
}

// serverStats is what the control socket and the status page report for one
// server.
type serverStats struct {
	Base string `json:"base"`
	Core any    `json:"core"`
	TLS  any    `json:"tls,omitempty"`
	ACME any    `json:"acme,omitempty"`
}

func engineStats(e *server.Engine) map[string]serverStats {
	out := map[string]serverStats{}
	for _, s := range e.Servers() {
		st := serverStats{Base: s.Base(), Core: s.Stats()}
		if t := s.Terminator(); t != nil {
			if t.Scheme() == "https" {
				st.TLS = t.TLSStats()
			}
			if a, ok := t.Adapter().(tlsadapter.ACMEStatsReporter); ok {
				st.ACME = a.ACMEStats()
			}
		}
		name := s.Config().Name
		if name == "" {
			name = "main"
		}
		out[name] = st
	}
	return out
}

// effectiveConfig lists every option's value, for the process and each
// server, in JSON's own types: switches as booleans, counts as numbers,
// lists as arrays, everything else (durations, sizes, words) as written on
// the command line. control.Redact hides the secrets.
func effectiveConfig(o *Options) map[string]map[string]any {
	out := map[string]map[string]any{"engine": values(config.Fields(&o.Process))}
	for _, c := range o.Servers() {
		name := c.Name
		if name == "" {
			name = "main"
		}
		out["server."+name] = values(c.Options().Fields)
	}
	return out
}

func values(fields []*config.Field) map[string]any {
	m := make(map[string]any, len(fields))
	for _, f := range fields {
		s := f.String()
		switch f.Type() {
		case "bool":
			m[f.Name], _ = strconv.ParseBool(s)
		case "int":
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				m[f.Name] = n
			} else {
				m[f.Name] = s
			}
		case "list":
			m[f.Name] = config.SplitListOf(f)
		default:
			m[f.Name] = s
		}
	}
	return m
}

// ctl runs `tlsedge ctl [--control-socket PATH | --config FILE] CMD`.
func ctl(ctx context.Context, args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("tlsedge ctl", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	path := fs.String("control-socket", "", "the control socket")
	conf := fs.String("config", "", "config file naming engine.control_socket")
	help := fs.BoolP("help", "h", false, "show this help")
	var explainArgs []string
	if i := slices.Index(args, "explain"); i >= 0 {
		args, explainArgs = slices.Clone(args[:i+1]), args[i+1:]
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("ctl: %w (tlsedge ctl --help)", err)
	}
	if *help {
		printCtlHelp(stdout, fs)
		return errHelp
	}
	if *path == "" && *conf != "" {
		f, err := config.ReadFile(*conf)
		if err != nil {
			return err
		}
		for _, e := range f.Entries {
			if e.Key == "engine.control_socket" {
				*path = e.Value.Text
			}
		}
	}
	if *path == "" {
		return errors.New("ctl: name the control socket with --control-socket PATH or --config FILE (engine.control_socket)")
	}
	if fs.NArg() == 1 && fs.Arg(0) == "explain" {
		return ctlExplain(ctx, *path, explainArgs, stdout)
	}
	return control.Ctl(ctx, *path, fs.Args(), stdout)
}

// printCtlHelp prints `tlsedge ctl --help`: the commands and flags.
func printCtlHelp(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprint(w, "tlsedge ctl: ask a running tlsedge over its control socket.\n\nUsage:\n  tlsedge ctl [--control-socket PATH | --config FILE] CMD\n\nCommands:\n")
	for _, c := range ctlCommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.Name, c.Help)
	}
	fmt.Fprint(w, "\nFlags:\n")
	fs.VisitAll(func(f *pflag.Flag) {
		name := "--" + f.Name
		if f.Shorthand != "" {
			name = "-" + f.Shorthand + ", " + name
		}
		if t := f.Value.Type(); t != "bool" {
			name += " " + t
		}
		fmt.Fprintf(w, "  %-24s %s\n", name, f.Usage)
	})
	fmt.Fprint(w, "\nOnly root and the uids and gids in engine.control_allow_uid and\nengine.control_allow_gid may use the socket.\n")
}
