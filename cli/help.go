package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// groupOrder is the order --help lists option groups in.
var groupOrder = []string{"Process", "Logging", "Listener", "Apps", "TLS", "ACME", "Peer credentials", "Policy", "Control socket", "Pool", "Timeouts", "Limits", "HTTP"}

func printHelp(w io.Writer, fs *pflag.FlagSet) {
	width := terminalWidth(w)
	fmt.Fprint(w, `tlsedge: a TLS edge server.

Usage:
  tlsedge [flags]         serve (HTTPS on 127.0.0.1:8443, local CA by default)
  tlsedge check [flags]   validate the configuration, serve nothing; exit 0 or 1
  tlsedge ctl CMD         stats, reload, stop or config, over the control socket
                          (--control-socket PATH, or --config FILE naming it)
  tlsedge version         print the version (also --version)
  tlsedge man             print the manual page (roff)
  tlsedge completion SH   print a completion script for SH: bash, zsh or fish

Every flag is also a config-file key: --socket-port 8443 is
server.socket_port = 8443 under [global] (process flags are engine.KEY).
Durations take seconds (10) or Go durations (1.5s); sizes take bytes or
units (500KiB, 100MiB).

Mount targets (--mount [HOST]/PREFIX=TARGET, repeatable; HOST a name or *.name):
  text:BODY                     200 with BODY as text/plain
  http://HOST:PORT[/base]       proxy to an HTTP/1.1 upstream (https: TLS)
  unix:/path.sock[:/base]       proxy to an upstream on a UNIX socket
  dir:/path                     static files below /path
  status:                       the status page; its metrics at PREFIX/metrics
  redirect:https://HOST[/path]  308 to HOST/path + the path below PREFIX
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
			writeWrapped(w, name, help, width)
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

// helpIndent is where a flag's help starts, after its name.
const helpIndent = 37

// writeWrapped writes one flag's line: its name, then its help wrapped at
// width, continuation lines indented under the help.
func writeWrapped(w io.Writer, name, help string, width int) {
	line := fmt.Sprintf("  %-34s ", name)
	if len(line) > helpIndent {
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		line = strings.Repeat(" ", helpIndent)
	}
	col := len(line)
	for i, word := range strings.Fields(help) {
		if i > 0 && col+1+len(word) > width {
			fmt.Fprintln(w, strings.TrimRight(line, " "))
			line, col = strings.Repeat(" ", helpIndent), helpIndent
		} else if i > 0 {
			line += " "
			col++
		}
		line += word
		col += len(word)
	}
	fmt.Fprintln(w, line)
}

// terminalWidth is the width --help wraps at: $COLUMNS, else the terminal's
// when w is one, else 80; never narrower than the 80 columns of the text
// above the flags.
func terminalWidth(w io.Writer) int {
	width := 80
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		width = n
	} else if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			width = int(ws.Col)
		}
	}
	return max(width, 80)
}
