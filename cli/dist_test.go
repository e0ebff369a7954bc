package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tlsedge/control"
	"tlsedge/internal/testenv"
)

// The tests here keep dist/ true: the units, the example configs, the man
// page and the completion scripts, against the real tools that read them.

var (
	builtOnce sync.Once
	builtPath string
	builtErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtPath != "" {
		os.RemoveAll(filepath.Dir(builtPath))
	}
	os.Exit(code)
}

// tlsedgeBinary builds tlsedge the way operators do, with make build (which
// stamps the version), once for the package's tests.
func tlsedgeBinary(t *testing.T) string {
	t.Helper()
	testenv.RequireTool(t, "make", "make")
	testenv.RequireTool(t, "git", "git")
	builtOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tlsedge-dist-")
		if err != nil {
			builtErr = err
			return
		}
		builtPath = filepath.Join(dir, "tlsedge")
		out, err := exec.Command("make", "-s", "-C", "..", "build", "OUT="+builtPath).CombinedOutput()
		if err != nil {
			builtErr = errors.New("make build: " + err.Error() + "\n" + string(out))
		}
	})
	if builtErr != nil {
		t.Fatal(builtErr)
	}
	return builtPath
}

func runBinary(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func runMain(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = Main(context.Background(), args, &o, &e)
	return o.String(), e.String(), code
}

// dist/tlsedge.1 is what tlsedge man prints. Run go test ./cli -run
// ManPageFile -update to regenerate it.
func TestManPageFile(t *testing.T) {
	const path = "../dist/tlsedge.1"
	want := ManPage()
	got, err := os.ReadFile(path)
	if *update && string(got) != want {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("dist/tlsedge.1 is out of date: run go test ./cli -run ManPageFile -update")
	}
	out, _, code := runMain("man")
	if code != 0 || out != want {
		t.Fatalf("tlsedge man: exit %d, output differs from ManPage(): %v", code, out != want)
	}
}

// groff renders the man page without a warning, and the rendered page lists
// every option of the table --help and the README are written from.
func TestManPageRenders(t *testing.T) {
	groff := testenv.RequireTool(t, "groff", "groff-base")
	f := filepath.Join(t.TempDir(), "tlsedge.1")
	os.WriteFile(f, []byte(ManPage()), 0o644)
	var stderr bytes.Buffer
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-P-cbou", f)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("groff: %v\n%s", err, stderr.String())
	}
	page := string(out)
	for _, o := range options() {
		flag := "--" + o.Flag() + " " + o.Type()
		if o.IsBool() {
			flag = "--" + o.Flag() + "\n"
		}
		if !strings.Contains(page, flag) {
			t.Errorf("rendered man page lacks %q", flag)
		}
		if o.Key != "-" && !strings.Contains(page, o.Key) {
			t.Errorf("rendered man page lacks the config key %s", o.Key)
		}
	}
	for _, c := range append(commands(), ctlCommands()...) {
		if !regexp.MustCompile(`(?m)^\s+` + c.Name + `\b`).MatchString(page) {
			t.Errorf("rendered man page lacks the command %s", c.Name)
		}
	}
	if man, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command(man, "--warnings", "-E", "UTF-8", "-l", f)
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=80")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Fatalf("man --warnings -l: %v\n%s", err, stderr.String())
		}
	}
}

// Each word completion offers for an option is one its parser takes.
func TestCompletionChoicesParse(t *testing.T) {
	n := 0
	for _, o := range options() {
		for _, word := range choices(o.Name) {
			n++
			opts, err := Load([]string{"--" + o.Flag(), word}, io.Discard)
			if err != nil {
				t.Errorf("--%s %s: %v", o.Flag(), word, err)
				continue
			}
			// Some choices need other options (builtin needs a
			// certificate); none may be refused for itself.
			if err := opts.Validate(); err != nil && strings.Contains(err.Error(), "--"+o.Flag()+":") {
				t.Errorf("--%s %s: %v", o.Flag(), word, err)
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d choices checked", n)
	}
}

// bashComplete runs the loaded bash completion for the words of a command
// line (the last one being completed) and returns what it offers.
func bashComplete(t *testing.T, bash, bin string, words ...string) []string {
	t.Helper()
	script := `source <("$TLSEDGE" completion bash) || exit 1
COMP_WORDS=(tlsedge "$@"); COMP_CWORD=$#
_tlsedge
printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command(bash, append([]string{"-c", script, "bash"}, words...)...)
	cmd.Env = append(os.Environ(), "TLSEDGE="+bin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("bash completion for %q: %v\n%s", words, err, stderr.String())
	}
	return strings.Fields(string(out))
}

// The bash script loads without error and completes commands, flags, the
// words an option takes, and ctl's commands.
func TestCompletionBash(t *testing.T) {
	bash := testenv.RequireTool(t, "bash", "bash")
	bin := tlsedgeBinary(t)
	out, stderr, code := runBinary(t, bash, "-c", `source <("$0" completion bash) && complete -p tlsedge`, bin)
	if code != 0 || stderr != "" || !strings.Contains(out, "_tlsedge") {
		t.Fatalf("loading the bash completion: exit %d\n%s%s", code, out, stderr)
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"ch"}, []string{"check"}},
		{[]string{"co"}, []string{"completion"}},
		{[]string{"--log-f"}, []string{"--log-file", "--log-format"}},
		{[]string{"check", "--ssl-mod"}, []string{"--ssl-module"}},
		{[]string{"--log-format", ""}, []string{"text", "json"}},
		{[]string{"--ssl-client-auth", "re"}, []string{"request", "require", "require-and-verify"}},
		{[]string{"--ssl-module", "=", "b"}, []string{"builtin"}},
		{[]string{"--socket-port", ""}, nil},
		{[]string{"ctl", "st"}, []string{"stats", "stop"}},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}},
		{[]string{"--vers"}, []string{"--version"}},
	} {
		got := bashComplete(t, bash, bin, tc.words...)
		if !slices.Equal(sorted(got), sorted(tc.want)) {
			t.Errorf("tlsedge %s<TAB>: got %q, want %q", strings.Join(tc.words, " "), got, tc.want)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// The zsh script parses and registers itself with compinit.
func TestCompletionZsh(t *testing.T) {
	zsh := testenv.RequireTool(t, "zsh", "zsh")
	bin := tlsedgeBinary(t)
	script, _, _ := runBinary(t, bin, "completion", "zsh")
	f := filepath.Join(t.TempDir(), "_tlsedge")
	os.WriteFile(f, []byte(script), 0o644)
	if out, _, code := runBinary(t, zsh, "-n", f); code != 0 {
		t.Fatalf("zsh -n: %s", out)
	}
	home := t.TempDir()
	cmd := exec.Command(zsh, "-f", "-c", `autoload -Uz compinit && compinit -u -d "$HOME/.zcompdump" && source <("$0" completion zsh) && print -r -- "$_comps[tlsedge]"`, bin)
	cmd.Env = append(os.Environ(), "HOME="+home, "ZDOTDIR="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 || strings.TrimSpace(string(out)) != "_tlsedge" {
		t.Fatalf("loading the zsh completion: %v: %q\n%s", err, out, stderr.String())
	}
}

// The fish script loads, and fish's own completer answers from it.
func TestCompletionFish(t *testing.T) {
	fish := testenv.RequireTool(t, "fish", "fish")
	bin := tlsedgeBinary(t)
	home := t.TempDir()
	complete := func(line string) []string {
		t.Helper()
		cmd := exec.Command(fish, "--no-config", "-c", `"$argv[1]" completion fish | source; or exit 1; complete -C"$argv[2]"`, bin, line)
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_DATA_HOME="+home)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("fish completion for %q: %v\n%s", line, err, stderr.String())
		}
		var words []string
		for l := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
			if w, _, _ := strings.Cut(l, "\t"); w != "" {
				words = append(words, w)
			}
		}
		return words
	}
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"tlsedge --log-f", []string{"--log-file", "--log-format"}},
		{"tlsedge --log-format ", []string{"json", "text"}},
		{"tlsedge ctl st", []string{"stats", "stop"}},
		{"tlsedge completion ", []string{"bash", "fish", "zsh"}},
		{"tlsedge chec", []string{"check"}},
	} {
		if got := complete(tc.line); !slices.Equal(sorted(got), tc.want) {
			t.Errorf("%s<TAB>: got %q, want %q", tc.line, got, tc.want)
		}
	}
}

func TestCompletionUnknownShell(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		if _, stderr, code := runMain(args...); code != 1 || !strings.Contains(stderr, "bash") {
			t.Errorf("tlsedge %v: exit %d, %q; want 1 and the shells named", args, code, stderr)
		}
	}
}

// distExample is one example config copied into dir with the absolute
// paths it names moved under dir, and the certificate files it names
// minted there.
func distExample(t *testing.T, name, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../dist/examples", name))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, p := range []string{"/etc/tlsedge", "/var/lib/tlsedge", "/var/log/tlsedge", "/run/tlsedge", "/run/app"} {
		os.MkdirAll(filepath.Join(dir, p), 0o755)
		text = strings.ReplaceAll(text, `"`+p+`/`, `"`+dir+p+`/`)
		text = strings.ReplaceAll(text, `"`+p+`"`, `"`+dir+p+`"`)
		text = strings.ReplaceAll(text, `:`+p+`/`, `:`+dir+p+`/`)
	}
	if strings.Contains(text, "example.com.pem") {
		leaf := testenv.NewCA(t, "dist").Leaf(t, "example.com", "www.example.com")
		for from, to := range map[string]string{leaf.CertFile: "example.com.pem", leaf.KeyFile: "example.com.key"} {
			data, _ := os.ReadFile(from)
			os.WriteFile(filepath.Join(dir, "/etc/tlsedge", to), data, 0o600)
		}
	}
	f := filepath.Join(dir, "tlsedge.conf")
	os.WriteFile(f, []byte(text), 0o644)
	return f
}

// Every example config in dist/examples passes tlsedge check; the ACME one,
// whose check asks the CA over the Internet, is loaded and validated.
func TestDistExamplesCheck(t *testing.T) {
	names, _ := filepath.Glob("../dist/examples/*.conf")
	if len(names) < 3 {
		t.Fatalf("found %d example configs in dist/examples, want at least 3", len(names))
	}
	for _, path := range names {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			f := distExample(t, name, dir)
			if strings.Contains(name, "acme") {
				o, err := Load([]string{"--config", f}, io.Discard)
				if err == nil {
					err = o.Validate()
				}
				if err != nil {
					t.Fatal(err)
				}
				if o.Main.TLS.SSLModule != "acme" || len(o.Main.TLS.ACME.Domains) < 2 {
					t.Fatalf("acme example: module %q, %d names; want acme and several names", o.Main.TLS.SSLModule, len(o.Main.TLS.ACME.Domains))
				}
				return
			}
			// check trial-binds the port; :443 needs root and may be taken
			// on a shared machine, so the test binds a free one instead.
			var out bytes.Buffer
			if err := check(context.Background(), []string{"--config", f, "--socket-port", "0"}, &out); err != nil {
				t.Fatalf("tlsedge check:\n%s\n%v", out.String(), err)
			}
			if !strings.Contains(out.String(), "configuration OK") {
				t.Fatalf("tlsedge check said:\n%s", out.String())
			}
		})
	}
}

// unitFiles are the systemd units dist/ ships.
var unitFiles = []string{"tlsedge.service", "tlsedge.socket", "tlsedge-local.socket"}

// systemd-analyze verify accepts every unit without a warning. The units
// are copied with ExecStart pointing at a freshly built tlsedge, and the
// man page their Documentation= names is put on MANPATH.
func TestSystemdUnitsVerify(t *testing.T) {
	sa := testenv.RequireTool(t, "systemd-analyze", "systemd")
	testenv.RequireTool(t, "man", "man-db")
	bin := tlsedgeBinary(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "man/man1"), 0o755)
	os.WriteFile(filepath.Join(dir, "man/man1/tlsedge.1"), []byte(ManPage()), 0o644)
	var paths []string
	for _, u := range unitFiles {
		b, err := os.ReadFile("../dist/" + u)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, u)
		os.WriteFile(p, bytes.ReplaceAll(b, []byte("/usr/local/bin/tlsedge"), []byte(bin)), 0o644)
		paths = append(paths, p)
	}
	verify := func(paths ...string) (string, int) {
		cmd := exec.Command(sa, append([]string{"verify"}, paths...)...)
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(dir, "man"), "SYSTEMD_LOG_COLOR=0")
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := verify(paths...); code != 0 || out != "" {
		t.Fatalf("systemd-analyze verify: exit %d\n%s", code, out)
	}
	// The check is real: a misspelt directive is reported.
	bad := filepath.Join(dir, "bad.service")
	b, _ := os.ReadFile(paths[0])
	os.WriteFile(bad, bytes.Replace(b, []byte("NoNewPrivileges="), []byte("NoNewPrivilege="), 1), 0o644)
	if out, _ := verify(bad); !strings.Contains(out, "NoNewPrivilege") {
		t.Fatalf("systemd-analyze verify did not report a misspelt directive: %q", out)
	}
}

// The service is what the brief of a sandboxed notify service says, and its
// ExecStart flags are ones tlsedge takes.
func TestSystemdServiceSettings(t *testing.T) {
	b, err := os.ReadFile("../dist/tlsedge.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, line := range []string{
		"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE", "StateDirectory=tlsedge", "RuntimeDirectory=tlsedge",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).MatchString(unit) {
			t.Errorf("tlsedge.service lacks %s", line)
		}
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(\S+) (.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("tlsedge.service has no ExecStart")
	}
	args := strings.Fields(m[2])
	dir := t.TempDir()
	conf := distExample(t, "local-peercreds.conf", dir)
	for i, a := range args {
		if a == "/etc/tlsedge/tlsedge.conf" {
			args[i] = conf
		}
	}
	o, err := Load(args, io.Discard)
	if err != nil {
		t.Fatalf("ExecStart's arguments %q: %v", m[2], err)
	}
	if o.Process.DataDir != "/var/lib/tlsedge" {
		t.Errorf("data_dir %q, want the StateDirectory /var/lib/tlsedge", o.Process.DataDir)
	}
	sock, err := os.ReadFile("../dist/tlsedge.socket")
	if err != nil || !strings.Contains(string(sock), "FileDescriptorName=main") {
		t.Errorf("tlsedge.socket does not name its socket main (the main server's): %v", err)
	}
}

// --version says what tlsedge version says, anywhere on the command line.
func TestVersionFlag(t *testing.T) {
	want, _, code := runMain("version")
	if code != 0 || !strings.HasPrefix(want, "tlsedge ") {
		t.Fatalf("tlsedge version: exit %d, %q", code, want)
	}
	for _, args := range [][]string{{"--version"}, {"--socket-port", "1", "--version"}, {"check", "--version"}} {
		if got, stderr, code := runMain(args...); code != 0 || got != want || stderr != "" {
			t.Errorf("tlsedge %v: exit %d, %q %q; want %q", args, code, got, stderr, want)
		}
	}
}

// A binary built by make build names its commit, not (devel).
func TestVersionStampedByMakeBuild(t *testing.T) {
	bin := tlsedgeBinary(t)
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	out, _, code := runBinary(t, bin, "version")
	flag, _, _ := runBinary(t, bin, "--version")
	if code != 0 || strings.Contains(out, "(devel)") || !strings.Contains(out, string(rev[:7])) || flag != out {
		t.Fatalf("tlsedge version: %q (--version %q); want the commit %s and no (devel)", out, flag, rev[:7])
	}
}

// tlsedge ctl --help prints its usage and exits 0.
func TestCtlHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		out, stderr, code := runMain("ctl", arg)
		if code != 0 || stderr != "" || strings.Contains(out, "pflag") {
			t.Fatalf("tlsedge ctl %s: exit %d, %q %q", arg, code, out, stderr)
		}
		for _, want := range []string{"--control-socket", "--config", "stats", "reload", "stop", "config"} {
			if !strings.Contains(out, want) {
				t.Errorf("tlsedge ctl %s lacks %q:\n%s", arg, want, out)
			}
		}
	}
	if _, stderr, code := runMain("ctl", "--nope"); code != 1 || !strings.Contains(stderr, "ctl --help") {
		t.Errorf("tlsedge ctl --nope: exit %d, %q; want 1 pointing at --help", code, stderr)
	}
}

// The ctl commands the help, man page and completions list are the ones
// the control client knows.
func TestCtlCommandsKnown(t *testing.T) {
	for _, c := range ctlCommands() {
		err := control.Ctl(context.Background(), "", []string{c.Name}, io.Discard)
		if err == nil || errors.Is(err, control.ErrUsage) {
			t.Errorf("ctl %s: %v; want only the missing socket refused", c.Name, err)
		}
	}
	if err := control.Ctl(context.Background(), "", []string{"nope"}, io.Discard); !errors.Is(err, control.ErrUsage) {
		t.Fatalf("an unknown ctl command: %v, want ErrUsage", err)
	}
}
