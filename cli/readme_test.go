package cli

import (
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tlsedge/server"
)

var update = flag.Bool("update", false, "rewrite the README's options table")

const (
	tableStart = "<!-- options:start -->\n"
	tableEnd   = "<!-- options:end -->"
)

// The README's options table is generated from the option tags; this test
// fails when they drift apart. Run go test ./cli -run README -update to fix.
func TestREADMEOptionsTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i, j := strings.Index(s, tableStart), strings.Index(s, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q ... %q markers", tableStart, tableEnd)
	}
	want := OptionsMarkdown()
	if got := s[i+len(tableStart) : j]; got != want {
		if *update {
			os.WriteFile("../README.md", []byte(s[:i+len(tableStart)]+want+s[j:]), 0o644)
			return
		}
		t.Fatal("README.md's options table is out of date: run go test ./cli -run README -update")
	}
}

// Every option has a flag, and every flag's help names a default or none.
func TestEveryOptionHasHelpAndGroup(t *testing.T) {
	var o Options
	o.Main = server.NewConfig()
	fs := newFlagSet(&o, nil)
	md := OptionsMarkdown()
	for _, line := range strings.Split(md, "\n")[2:] {
		if line == "" {
			continue
		}
		cells := strings.Split(line, " | ")
		flagName := strings.Trim(cells[1], "`-")
		f := fs.Lookup(flagName)
		if f == nil {
			t.Errorf("option row %q has no flag", line)
			continue
		}
		if f.Usage == "" || len(f.Annotations["group"]) == 0 {
			t.Errorf("flag --%s lacks help or a group", flagName)
		}
	}
}

// Every config file the README shows loads and validates as printed.
func TestREADMEConfigExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "```ini\n")[1:]
	if len(blocks) < 3 {
		t.Fatalf("found %d ini examples in the README, want at least 3", len(blocks))
	}
	for i, b := range blocks {
		body, _, _ := strings.Cut(b, "```")
		f := filepath.Join(t.TempDir(), "example.conf")
		os.WriteFile(f, []byte(body), 0o644)
		o, err := Load([]string{"--config", f}, io.Discard)
		if err == nil {
			err = o.Validate()
		}
		// Files the examples name exist on the reader's machine, not here.
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("README ini example %d:\n%s\n%v", i+1, body, err)
		}
	}
}
