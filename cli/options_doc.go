package cli

import (
	"fmt"
	"strings"

	"tlsedge/config"
	"tlsedge/server"
)

// option is one row of the option table that --help, the README, the man
// page and the shell completions are all written from.
type option struct {
	*config.Field
	Key string // as written in a config file: engine.KEY or server.KEY; "-" for --config
}

// options lists every option, process options first, in --help's group order.
func options() []option {
	var p Process
	c := server.NewConfig()
	fields := append(config.Fields(&p), c.Options().Fields...)
	groups := map[string][]*config.Field{}
	for _, f := range fields {
		groups[f.Group] = append(groups[f.Group], f)
	}
	var out []option
	for _, g := range append(groupOrder, "") {
		for _, f := range groups[g] {
			key := "server." + f.Name
			if g == "Process" || g == "Logging" || g == "Control socket" {
				key = "engine." + f.Name
			}
			if f.Name == "config" {
				key = "-"
			}
			out = append(out, option{Field: f, Key: key})
		}
	}
	return out
}

// OptionsMarkdown renders every option as a Markdown table, grouped as in
// --help: the README's options table is this text, kept in sync by a test.
func OptionsMarkdown() string {
	var b strings.Builder
	b.WriteString("| option (config key) | flag | type | default | what it does |\n|---|---|---|---|---|\n")
	for _, o := range options() {
		def := o.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | %s | `%s` | %s |\n", o.Key, o.Flag(), o.Type(), def, strings.ReplaceAll(o.Help, "|", "\\|"))
	}
	return b.String()
}
