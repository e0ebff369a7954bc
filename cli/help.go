package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// groupOrder is the order --help lists option groups in.
var groupOrder = []string{"Process", "Logging", "Listener", "Apps", "TLS", "ACME", "Peer credentials", "Control socket", "Pool", "Timeouts", "Limits", "HTTP"}

func printHelp(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprint(w, `tlsedge: a TLS edge server.

Usage:
  tlsedge [flags]           serve (HTTPS on 127.0.0.1:8443 with a local CA by default)
  tlsedge check [flags]     validate the configuration without serving; exit 0 or 1
  tlsedge ctl CMD           stats, reload, stop or config, over the control socket
                            (--control-socket PATH, or --config FILE naming it)
  tlsedge version           print the version

Every flag is also a config-file key: --socket-port 8443 is server.socket_port = 8443
under [global] (process flags are engine.KEY). Durations take seconds (10) or Go
durations (1.5s); sizes take bytes or units (500KiB, 100MiB).
`)
	groups := map[string][]*pflag.Flag{}
	fs.VisitAll(func(f *pflag.Flag) {
		g := "Other"
		if a := f.Annotations["group"]; len(a) > 0 {
			g = a[0]
		}
		groups[g] = append(groups[g], f)
	})
	order := append(groupOrder, "Other")
	for g := range groups {
		if !contains(order, g) {
			order = append(order, g)
		}
	}
	for _, g := range order {
		flags := groups[g]
		if len(flags) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", g)
		for _, f := range flags {
			name := "--" + f.Name
			if f.Shorthand != "" {
				name = "-" + f.Shorthand + ", " + name
			}
			if t := f.Value.Type(); t != "bool" {
				name += " " + t
			}
			help := f.Usage
			if f.DefValue != "" && f.DefValue != "false" {
				help += " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(w, "  %-34s %s\n", name, help)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
