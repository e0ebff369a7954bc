package config

import (
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseValue(t *testing.T) {
	tests := []struct {
		in   string
		want Value
		err  string
	}{
		{in: "8443", want: Value{Kind: Number, Text: "8443"}},
		{in: "-1", want: Value{Kind: Number, Text: "-1"}},
		{in: "1.5", want: Value{Kind: Number, Text: "1.5"}},
		{in: `"127.0.0.1"`, want: Value{Kind: String, Text: "127.0.0.1"}},
		{in: `'single'`, want: Value{Kind: String, Text: "single"}},
		{in: `"esc\"aped\\"`, want: Value{Kind: String, Text: `esc"aped\`}},
		{in: "True", want: Value{Kind: Bool, Text: "true"}},
		{in: "False", want: Value{Kind: Bool, Text: "false"}},
		{in: "None", want: Value{Kind: None}},
		{in: `["/=text:a", '/b=text:b']`, want: Value{Kind: List, List: []string{"/=text:a", "/b=text:b"}}},
		{in: `[1, 2,3]`, want: Value{Kind: List, List: []string{"1", "2", "3"}}},
		{in: `[]`, want: Value{Kind: List, List: []string{}}},
		{in: `"a#b" # a comment`, want: Value{Kind: String, Text: "a#b"}},
		{in: `10   # seconds`, want: Value{Kind: Number, Text: "10"}},
		{in: `True ; on`, want: Value{Kind: Bool, Text: "true"}},
		{in: `["x"] # list`, want: Value{Kind: List, List: []string{"x"}}},
		{in: "# only a comment", err: "missing value"},
		{in: "", err: "missing value"},
		{in: "builtin", err: `strings need quotes: "builtin"`},
		{in: `"open`, err: "no closing"},
		{in: `"a" b`, err: "after the closing quote"},
		{in: `["a"`, err: "no closing ]"},
		{in: `["a" "b"]`, err: "separated by commas"},
		{in: `[None]`, err: "list item"},
		{in: `"\x"`, err: "unknown escape"},
		{in: "NaN", err: "not a value"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseValue(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseValue(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseValue(%q): %v", tt.in, err)
			}
			if got.Kind != tt.want.Kind || got.Text != tt.want.Text || strings.Join(got.List, "|") != strings.Join(tt.want.List, "|") {
				t.Fatalf("ParseValue(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseFile(t *testing.T) {
	src := "# comment\n; another\n\n[global]\nserver.socket_port = 8443\nserver.local.socket_file = \"/run/x.sock\"\n"
	f, err := Parse("t.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != 2 || f.Entries[0].Key != "server.socket_port" || f.Entries[0].Line != 5 ||
		f.Entries[1].Value.Text != "/run/x.sock" || f.Entries[1].Line != 6 {
		t.Fatalf("entries = %+v", f.Entries)
	}
}

func TestParseFileErrors(t *testing.T) {
	tests := []struct {
		src  string
		want []string
	}{
		{"server.socket_port = 1\n", []string{"t.conf:1: server.socket_port: key before any section"}},
		{"[global\n", []string{"t.conf:1: section header"}},
		{"[app]\nx = 1\n", []string{"t.conf:1: unknown section [app]"}},
		{"[global]\njust words\n", []string{"t.conf:2: expected key = value"}},
		{"[global]\na = 1\nb = oops\nc = \"x\n", []string{"t.conf:3: b:", "t.conf:4: c:"}},
	}
	for _, tt := range tests {
		_, err := Parse("t.conf", []byte(tt.src))
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", tt.src)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Parse(%q) error %q does not contain %q", tt.src, err, w)
			}
		}
	}
}

func TestReadFileMissing(t *testing.T) {
	_, err := ReadFile("/nonexistent/tlsedge.conf")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("ReadFile error = %v", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"512000", 512000, false}, {"500KiB", 500 << 10, false}, {"100MiB", 100 << 20, false},
		{"1GiB", 1 << 30, false}, {"1kb", 1000, false}, {"2M", 2 << 20, false}, {"1.5KiB", 1536, false},
		{"-1", -1, false}, {"0", 0, false},
		{"-5", 0, true}, {"lots", 0, true}, {"1.5", 0, true}, {"99999999999GiB", 0, true}, {"", 0, true}, {"NaNKiB", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"10", 10 * time.Second, false}, {"1.5", 1500 * time.Millisecond, false}, {"1.5s", 1500 * time.Millisecond, false},
		{"2m", 2 * time.Minute, false}, {"0", 0, false},
		{"-1", 0, true}, {"-1s", 0, true}, {"soon", 0, true}, {"Inf", 0, true}, {"0x10", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

type testOpts struct {
	Port  int           `opt:"port" default:"8443"`
	Size  int64         `opt:"size" default:"1KiB" unit:"bytes"`
	Wait  time.Duration `opt:"wait" default:"10s"`
	Mode  os.FileMode   `opt:"mode" default:"0660"`
	On    bool          `opt:"on" default:"true"`
	List  []string      `opt:"list" default:"a,b"`
	Inner struct {
		Name string `opt:"name" default:"x"`
	}
	Skip string `opt:"-"`
}

func TestTable(t *testing.T) {
	var o testOpts
	tab := NewTable(&o)
	if err := tab.Reset(); err != nil {
		t.Fatal(err)
	}
	if o.Port != 8443 || o.Size != 1024 || o.Wait != 10*time.Second || o.Mode != 0o660 || !o.On ||
		strings.Join(o.List, ",") != "a,b" || o.Inner.Name != "x" {
		t.Fatalf("defaults = %+v", o)
	}
	if got := strings.Join(tab.Names(), " "); got != "list mode name on port size wait" {
		t.Fatalf("names = %s", got)
	}
	list, _ := tab.Lookup("list")
	list.Set("c")
	list.Set("d,e")
	if strings.Join(o.List, ",") != "c,d,e" {
		t.Fatalf("list after Set = %v (first Set replaces, later ones append)", o.List)
	}
	on, _ := tab.Lookup("on")
	if err := on.SetValue(Value{Kind: Number, Text: "1"}); err == nil {
		t.Fatal("a number was accepted for a switch")
	}
	size, _ := tab.Lookup("size")
	if err := size.SetValue(Value{Kind: None}); err != nil || o.Size != 0 {
		t.Fatalf("None: %v, size %d", err, o.Size)
	}
	mode, _ := tab.Lookup("mode")
	if err := mode.Set("0999"); err == nil {
		t.Fatal("mode 0999 accepted")
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"socket_port", "socket_host", "socket_file", "thread_pool", "max_request_body_size"}
	for in, want := range map[string]string{
		"socket_prot": "socket_port", "threadpool": "thread_pool", "max_request_body": "max_request_body_size", "zzz": "",
	} {
		if got := Suggest(in, names); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// parseBound is how long one parse of at most a MiB may take in the tests
// below. A linear parse of that much takes milliseconds, or a few hundred
// under -race or the fuzzer's instrumentation on a busy machine; a quadratic
// one takes minutes. The gap is wide enough that the bound says "linear"
// without timing anything finely.
const parseBound = 10 * time.Second

// parseWithin parses src, failing t if that takes longer than parseBound. It
// waits for the parse no longer than that, so a quadratic case fails the test
// instead of hanging it.
func parseWithin(t *testing.T, what, src string) (*File, error) {
	t.Helper()
	type result struct {
		f   *File
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := Parse("f", []byte(src))
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		return r.f, r.err
	case <-time.After(parseBound):
		t.Fatalf("parsing %s (%d bytes) did not finish within %v: the parser is not linear", what, len(src), parseBound)
		return nil, nil
	}
}

// TestParseNestedBrackets is the 200 KB file of nested "[" that once kept the
// parser busy for minutes: each bracket rescanned the rest of the line.
func TestParseNestedBrackets(t *testing.T) {
	for name, src := range map[string]string{
		"value":   "[global]\nk = " + strings.Repeat("[", 200<<10) + "\n",
		"in list": "[global]\nk = [1, " + strings.Repeat("[", 200<<10) + "]\n",
		"closed":  "[global]\nk = " + strings.Repeat("[", 100<<10) + strings.Repeat("]", 100<<10) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseWithin(t, name, src)
			if err == nil || !strings.Contains(err.Error(), "list items cannot be lists") {
				t.Fatalf("err = %.200v, want the nested-list error", err)
			}
		})
	}
}

// pumpSize is how large FuzzParse makes each input by repetition before
// parsing it again: while fuzzing, large enough that anything quadratic in
// the input shows as seconds; when "go test" only replays the corpus (some
// hundreds of inputs), small enough that the replay stays quick.
func pumpSize() int {
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		return 64 << 10
	}
	return 16 << 10
}

// FuzzParse feeds arbitrary files to the parser: it must never panic, every
// entry it accepts must come from a [global] line that exists, and parsing
// must stay linear. For the last, the input is also parsed repeated to about
// pumpSize() bytes, both as whole lines and inside one value, so a pattern the
// fuzzer finds in a few bytes ("[", "\"a\",") is tried at a size where
// quadratic work cannot hide under parseBound.
func FuzzParse(f *testing.F) {
	f.Add("[global]\nserver.socket_port = 8443\nserver.mount = [\"/=text:a\", 'b']\n")
	f.Add("[global]\na = \"x\\\"y\"\nb = None\nc = True\n")
	f.Add("\ufeff[global]\n; c\n# c\nkey=\n")
	f.Add("[")
	f.Add("\"a\", ")
	f.Add("[global]\nk = [[")
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > MaxFileSize {
			return
		}
		file, _ := parseWithin(t, "the input", src)
		lines := strings.Count(src, "\n") + 1
		for _, e := range file.Entries {
			if e.Line < 1 || e.Line > lines || e.Section != "global" || e.Key == "" {
				t.Fatalf("bad entry %+v", e)
			}
		}
		if src == "" {
			return
		}
		n := pumpSize()/len(src) + 1
		parseWithin(t, "the input repeated", strings.Repeat(src, n))
		parseWithin(t, "the input repeated in a value", "[global]\nk = "+strings.Repeat(src, n))
	})
}
