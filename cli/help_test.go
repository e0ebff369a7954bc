package cli

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// --help fits the terminal: every line within $COLUMNS but a single word
// longer than the space (a URL), and the mount targets are listed.
func TestHelpWraps(t *testing.T) {
	for _, cols := range []string{"80", "100", "132"} {
		t.Setenv("COLUMNS", cols)
		var b bytes.Buffer
		if _, err := Load([]string{"--help"}, &b); err != errHelp {
			t.Fatal(err)
		}
		width, _ := strconv.Atoi(cols)
		for line := range strings.SplitSeq(b.String(), "\n") {
			if len(line) > width && len(strings.Fields(line)) > 1 {
				t.Errorf("COLUMNS=%s: %d columns: %q", cols, len(line), line)
			}
		}
		for _, want := range []string{"Mount targets", "text:BODY", "redirect:https://HOST[/path]", "--ssl-client-auth word"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("help lacks %q", want)
			}
		}
	}
}
