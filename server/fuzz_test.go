package server

import (
	"runtime/debug"
	"testing"

	"tlsedge/config"
	"tlsedge/policy"
	"tlsedge/tlsadapter"
)

// FuzzBuildConfig builds servers from config file text the way start-up and
// a reload do, short of binding: parse, split by server, apply, validate,
// New, then what each server builds from its options (mounts, the peer
// policy, and the TLS configuration the SSL adapter would serve with). A bad
// file must come back as an error; a panic anywhere is a failure, because on
// SIGHUP it would take the running server down with it.
//
// testdata/fuzz/FuzzBuildConfig holds the inputs that once panicked, such as
// ssl_curves = ["-X25519MLKEM768", "-X25519MLKEM768"].
func FuzzBuildConfig(f *testing.F) {
	for _, seed := range []string{
		"[global]\nserver.socket_port = 8443\nserver.mount = [\"/=text:hello\"]\n",
		"[global]\nserver.ssl_curves = [\"X25519\", \"P-256\"]\nserver.ssl_ciphers = \"ECDHE+AESGCM\"\n",
		"[global]\nserver.ssl_curves = [\"-X25519MLKEM768\", \"X25519\"]\nserver.ssl_min_version = \"1.3\"\n",
		"[global]\nserver.ssl_client_auth = \"request\"\nserver.ssl_alpn = [\"h2\"]\nserver.ssl_session_tickets = False\n",
		"[global]\nserver.api.socket_port = 9000\nserver.api.mount = [\"/v1=text:v1\"]\nserver.api.ssl_module = \"none\"\n",
		"[global]\nserver.socket_file = \"/run/t.sock\"\nserver.peercreds = True\nserver.peercreds_allow_uid = [\"0\"]\n" +
			"server.peercreds_mount_allow = [\"/admin=uid:0\"]\n",
		"[global]\nserver.ssl_hsts_max_age = \"1h\"\nserver.ssl_hsts_include_subdomains = True\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		file, err := config.Parse("fuzz.conf", []byte(src))
		if err != nil {
			return
		}
		var fc *FileConfig
		stage(t, "SplitFile", func() { fc, err = SplitFile(file) })
		if err != nil {
			return
		}
		main := NewConfig()
		stage(t, "Apply", func() { err = Apply(&main, fc.Path, fc.Main) })
		if err != nil {
			return
		}
		configs := []Config{main}
		for _, name := range fc.ExtraNames() {
			var c Config
			stage(t, "Extra "+name, func() { c, err = fc.Extra(main, name) })
			if err != nil {
				return
			}
			configs = append(configs, c)
		}
		for _, c := range configs {
			buildServer(t, c)
		}
	})
}

// buildServer builds what one server's configuration makes, without binding
// or starting an SSL module (the internal one would write a CA, acme would
// dial out).
func buildServer(t *testing.T, c Config) {
	var err error
	stage(t, "Validate", func() { err = c.Validate() })
	if err != nil {
		return
	}
	stage(t, "New", func() { _, err = New(c) })
	if err != nil {
		return
	}
	stage(t, "mounts", func() {
		if _, mounts, err := buildHandler(&c); err == nil {
			closeMounts(mounts)
		}
	})
	stage(t, "peer policy", func() { _, _ = policy.NewPeerPolicy(c.Peer, policy.PeerPolicyConfig{}) })
	// What the terminator builds from the options (module checks, the
	// handshake configuration, files read bounded), without an adapter.
	stage(t, "TLS configuration", func() { _ = tlsadapter.Check(c.TLS, nil, c.TLSConfig) })
}

// stage runs fn, failing t with the stage's name and the stack if it panics.
func stage(t *testing.T, name string, fn func()) {
	t.Helper()
	var stack []byte
	var p any
	func() {
		defer func() {
			if p = recover(); p != nil {
				stack = debug.Stack()
			}
		}()
		fn()
	}()
	if p != nil {
		t.Fatalf("%s panicked: %v\n%s", name, p, stack)
	}
}
