// Package cli is the tlsedge command: it reads flags and the config file into
// server configurations, and runs the process around the servers: the serve,
// check and version commands, logging, signals, the pidfile, daemonizing,
// dropping privileges and systemd socket activation and notification.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"tlsedge/config"
	"tlsedge/control"
	"tlsedge/server"
	"tlsedge/storage"
)

// Process holds the options of the process rather than of one server. In a
// config file they are written engine.KEY.
type Process struct {
	Config  string `opt:"config" group:"Process" help:"read options from this INI file ([global] with server.KEY = value); flags override it"`
	DataDir string `opt:"data_dir" group:"Process" help:"where the local CA and ACME data live (default: $XDG_DATA_HOME/tlsedge or ~/.local/share/tlsedge)"`
	// Storage is parsed once, when set: a bad URL is an error at load.
	Storage        storage.Location `opt:"storage" group:"Process" help:"state shared by the nodes of a cluster (ACME accounts, certificates, locks): a directory, or postgres://USER@HOST:PORT/DB with the password in PGPASSWORD, PGPASSFILE or ~/.pgpass (default: files under data_dir; acme_storage still wins)"`
	StorageKeyFile string           `opt:"storage_key_file" group:"Process" help:"with a postgres:// storage: a file holding 32 random bytes as hex or base64 (openssl rand -hex 32; mode 600), the same on every node, that seals the session-ticket keys the nodes share; required there unless every server has ssl_session_tickets false"`
	Pidfile        string           `opt:"pidfile" group:"Process" help:"write the process ID here once the listeners are up; removed on exit"`
	Daemonize      bool             `opt:"daemonize" default:"false" group:"Process" help:"detach into the background; exits 0 only once the server is serving"`
	User           string           `opt:"user" group:"Process" help:"after binding, run as this user (name or uid)"`
	Group          string           `opt:"group" group:"Process" help:"after binding, run as this group (default: the user's primary group)"`
	LogFormat      string           `opt:"log_format" default:"text" group:"Logging" help:"log format: text or json"`
	LogLevel       string           `opt:"log_level" default:"info" group:"Logging" help:"least severe level logged: debug, info, warn or error"`
	LogFile        string           `opt:"log_file" group:"Logging" help:"append logs to this file instead of stderr"`

	Control control.Options // control_socket and who may use it
}

func (p *Process) validate() error {
	var errs []error
	if p.LogFormat != "text" && p.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log_format: %q; use text or json", p.LogFormat))
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(p.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("log_level: %q; use debug, info, warn or error", p.LogLevel))
	}
	if p.Group != "" && p.User == "" {
		errs = append(errs, errors.New("group: needs user as well"))
	}
	errs = append(errs, p.Control.Validate())
	return errors.Join(errs...)
}

// Options is everything the command line and config file say.
type Options struct {
	Process Process
	Main    server.Config
	Extras  []server.Config // server.NAME.* servers, sorted by name

	where config.Where // where each key was set; nil when built in Go
}

// Locate gives each option error in err the place its key was set: the
// flag, or the config file and line.
func (o *Options) Locate(err error) error {
	if o.where == nil {
		return err
	}
	return config.Locate(err, o.where)
}

// errHelp is returned when --help was asked for and printed.
var errHelp = errors.New("help shown")

// Load reads defaults, then the config file, then flags (each overriding the
// one before). Every error names its flag, or its file, line and key.
func Load(args []string, usage io.Writer) (*Options, error) {
	// First pass: learn --config (and catch flag syntax errors early).
	var scratch Options
	scratch.Main = server.NewConfig()
	fs := newFlagSet(&scratch, usage)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if help, _ := fs.GetBool("help"); help {
		printHelp(usage, fs)
		return nil, errHelp
	}
	if version, _ := fs.GetBool("version"); version {
		fmt.Fprintln(usage, Version())
		return nil, errHelp
	}
	if len(fs.Args()) > 0 {
		return nil, fmt.Errorf("unexpected argument %q (options are --flags; see tlsedge --help)", fs.Args()[0])
	}

	o := &Options{Main: server.NewConfig()}
	pt := config.NewTable(&o.Process)
	if err := pt.Reset(); err != nil {
		return nil, err
	}
	var fc *server.FileConfig
	if path := scratch.Process.Config; path != "" {
		f, err := config.ReadFile(path)
		if err != nil {
			return nil, err
		}
		fc, err = server.SplitFile(f)
		errs := []error{err}
		errs = append(errs, applyProcess(pt, path, fc.Other))
		errs = append(errs, server.Apply(&o.Main, path, fc.Main))
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	fs = newFlagSet(o, usage)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if err := o.Process.validate(); err != nil {
		return nil, err
	}
	o.where = whereSet(fs, fc)
	if fc != nil {
		var errs []error
		for _, name := range fc.ExtraNames() {
			c, err := fc.Extra(o.Main, name)
			errs = append(errs, err)
			o.Extras = append(o.Extras, c)
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// applyProcess sets engine.KEY entries; anything else outside server.* is an
// unknown key.
func applyProcess(t *config.Table, path string, entries []config.Entry) error {
	var errs []error
	for _, e := range entries {
		key, ok := strings.CutPrefix(e.Key, "engine.")
		f, found := t.Lookup(key)
		if !ok || !found || key == "config" {
			names := slices.DeleteFunc(t.Names(), func(n string) bool { return n == "config" })
			msg := "unknown option: server options are server.KEY, process options engine.KEY"
			if s := config.Suggest(key, names); s != "" {
				msg = "unknown option; did you mean engine." + s + "?"
			}
			errs = append(errs, &config.Error{Path: path, Line: e.Line, Key: e.Key, Msg: msg, Err: config.ErrUnknownOption})
			continue
		}
		if err := f.SetValue(e.Value); err != nil {
			errs = append(errs, &config.Error{Path: path, Line: e.Line, Key: e.Key, Msg: err.Error(), Err: config.ErrBadValue})
		}
	}
	return errors.Join(errs...)
}

func newFlagSet(o *Options, usage io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("tlsedge", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	config.NewTable(&o.Process).AddFlags(fs)
	o.Main.Options().AddFlags(fs)
	fs.BoolP("help", "h", false, "show this help")
	fs.Bool("version", false, "print the version and exit")
	return fs
}

// parseFlags parses args, turning pflag's errors into ones that suggest the
// closest flag for a typo.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil {
		return nil
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		var names []string
		fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
		if s := config.Suggest(name, names); s != "" {
			return fmt.Errorf("unknown flag --%s; did you mean --%s?", name, s)
		}
		return fmt.Errorf("unknown flag --%s (tlsedge --help lists them)", name)
	}
	return errors.New(msg)
}

// Servers returns every server's config, the main one first.
func (o *Options) Servers() []server.Config {
	return append([]server.Config{o.Main}, o.Extras...)
}

// Validate checks every server's config; each error names its flag, or its
// file, line and key.
func (o *Options) Validate() error {
	var errs []error
	for _, c := range o.Servers() {
		errs = append(errs, c.Validate())
	}
	return o.Locate(errors.Join(errs...))
}

// whereSet finds where a key was set: a flag wins over the file, and an
// extra server (server.NAME.KEY) inherits what it does not set from the
// main server.
func whereSet(fs *pflag.FlagSet, fc *server.FileConfig) config.Where {
	return func(key string) (string, int, bool) {
		if rest, ok := strings.CutPrefix(key, "engine."); ok {
			if f := fs.Lookup(strings.ReplaceAll(rest, "_", "-")); f != nil && f.Changed {
				return "--" + f.Name, 0, true
			}
			if fc != nil {
				for _, e := range fc.Other {
					if e.Key == key {
						return fc.Path, e.Line, true
					}
				}
			}
			return "", 0, false
		}
		if rest, ok := strings.CutPrefix(key, "server."); ok && fc != nil {
			if name, _, ok := strings.Cut(rest, "."); ok {
				for _, e := range fc.Extras[name] {
					if e.Key == key {
						return fc.Path, e.Line, true
					}
				}
			}
			key = rest[strings.Index(rest, ".")+1:]
		}
		if f := fs.Lookup(strings.ReplaceAll(key, "_", "-")); f != nil && f.Changed {
			return "--" + f.Name, 0, true
		}
		if fc != nil {
			for _, e := range fc.Main {
				if e.Key == "server."+key {
					return fc.Path, e.Line, true
				}
			}
		}
		return "", 0, false
	}
}

// Main runs the command in args and returns the process exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if err := run(ctx, args, stdout, stderr); err != nil {
		if errors.Is(err, errHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "tlsedge:", strings.ReplaceAll(err.Error(), "\n", "\ntlsedge: "))
		return 1
	}
	return 0
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "", "serve":
		return serve(ctx, args, stdout, stderr)
	case "check":
		return check(ctx, args, stdout)
	case "ctl":
		return ctl(ctx, args, stdout)
	case "policy":
		return policyCmd(ctx, args, stdout)
	case "version":
		fmt.Fprintln(stdout, Version())
		return nil
	case "help":
		_, err := Load([]string{"--help"}, stdout)
		return err
	case "man":
		if len(args) > 0 {
			return fmt.Errorf("man: unexpected argument %q", args[0])
		}
		fmt.Fprint(stdout, ManPage())
		return nil
	case "completion":
		if len(args) != 1 {
			return fmt.Errorf("completion: name the shell: tlsedge completion %s", strings.ReplaceAll(shells, " ", "|"))
		}
		script, err := Completion(args[0])
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, script)
		return nil
	}
	return fmt.Errorf("unknown command %q: use serve (the default), check, ctl, policy, version, man, completion or help", cmd)
}

// buildVersion is the version `make build` stamps in with
// -ldflags "-X tlsedge/cli.buildVersion=...": git describe's answer. Go
// stamps the VCS revision itself only when -buildvcs is on, which a
// GOFLAGS=-buildvcs=false environment or a build outside the checkout turns
// off; the Makefile's stamp holds either way.
var buildVersion string

// Version describes the build: the version make build stamped, or else the
// module version and VCS revision Go recorded; then the Go version.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "tlsedge (unknown build)"
	}
	if buildVersion != "" {
		return "tlsedge " + buildVersion + " " + bi.GoVersion
	}
	v := "tlsedge " + bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "+dirty"
		}
	}
	return v + " " + bi.GoVersion
}
