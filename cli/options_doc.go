package cli

import (
	"fmt"
	"strings"

	"tlsedge/config"
	"tlsedge/server"
)

// OptionsMarkdown renders every option as a Markdown table, grouped as in
// --help: the README's options table is this text, kept in sync by a test.
func OptionsMarkdown() string {
	var p Process
	c := server.NewConfig()
	fields := append(config.Fields(&p), c.Options().Fields...)
	groups := map[string][]*config.Field{}
	for _, f := range fields {
		groups[f.Group] = append(groups[f.Group], f)
	}
	var b strings.Builder
	b.WriteString("| option (config key) | flag | type | default | what it does |\n|---|---|---|---|---|\n")
	for _, g := range append(groupOrder, "") {
		for _, f := range groups[g] {
			key := "server." + f.Name
			if g == "Process" || g == "Logging" || g == "Control socket" {
				key = "engine." + f.Name
			}
			if f.Name == "config" {
				key = "-"
			}
			def := f.Default
			if def == "" {
				def = "-"
			}
			fmt.Fprintf(&b, "| `%s` | `--%s` | %s | `%s` | %s |\n", key, f.Flag(), f.Type(), def, strings.ReplaceAll(f.Help, "|", "\\|"))
		}
	}
	return b.String()
}
