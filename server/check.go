package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tlsedge/tlsadapter"
)

// checkStartup finds what would stop Start, without binding for good or
// writing anything: a socket directory that does not exist, an address
// already taken or not allowed, and users or groups that do not exist.
// Each error names its option and says what to do. A port held by a running
// tlsedge is a note, not an error: checking the configuration of the
// process that serves it, before a reload, is what check is for.
func (s *Server) checkStartup() (notes []string, errs []error) {
	c := &s.cfg
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", c.KeyPrefix(), key, fmt.Sprintf(format, args...)))
	}
	switch {
	case len(c.Listeners) > 0:
	case c.SocketFile != "" && !strings.HasPrefix(c.SocketFile, "@"):
		dir := filepath.Dir(c.SocketFile)
		if fi, err := os.Stat(dir); err != nil {
			bad("socket_file", "directory %s: %v (create it, or choose another path)", dir, err)
		} else if !fi.IsDir() {
			bad("socket_file", "%s is not a directory", dir)
		}
		if fi, err := os.Lstat(c.SocketFile); err == nil && fi.Mode().Type() != os.ModeSocket {
			bad("socket_file", "%s exists and is not a socket; tlsedge replaces only a stale socket", c.SocketFile)
		}
	case c.SocketFile == "" && c.SocketPort != 0:
		// A trial bind tells a port taken, or one below 1024 without the
		// right, from one start-up can have; it is released at once.
		for _, addr := range s.tcpAddrs() {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				be := &bindError{Addr: addr, Err: err}
				if !errors.Is(err, syscall.EADDRINUSE) {
					bad("socket_port", "%v", be)
					continue
				}
				pid, comm, exe, ok := portHolder(c.SocketPort)
				switch {
				case ok && isTLSEdge(comm, exe):
					notes = append(notes, fmt.Sprintf("%ssocket_port: %s is served by tlsedge (pid %d); a reload (SIGHUP) keeps the port, a restart must stop that process first",
						c.KeyPrefix(), addr, pid))
				case ok:
					name := comm
					if exe != "" {
						name = filepath.Base(exe) // comm is cut at 15 bytes
					}
					bad("socket_port", "cannot listen on %s: the port is held by %s (pid %d); stop it or choose another socket_port", addr, name, pid)
				default:
					bad("socket_port", "%v; if that is a tlsedge running, a reload does not need the port but a restart does", be)
				}
				continue
			}
			ln.Close()
		}
	}
	for _, name := range append([]string{c.SocketFileOwner}, c.Peer.PeercredsAllowUser...) {
		if name != "" && !isID(name) {
			if _, err := user.Lookup(name); err != nil {
				bad("peercreds_allow_user", "no user %q on this machine (%v)", name, err)
			}
		}
	}
	for _, name := range append([]string{c.SocketFileGroup}, c.Peer.PeercredsAllowGroup...) {
		if name != "" && !isID(name) {
			if _, err := user.LookupGroup(name); err != nil {
				bad("peercreds_allow_group", "no group %q on this machine (%v)", name, err)
			}
		}
	}
	for _, rule := range c.Peer.PeercredsMountAllow {
		_, terms, _ := strings.Cut(rule, "=")
		for term := range strings.FieldsSeq(terms) {
			kind, name, _ := strings.Cut(term, ":")
			switch kind {
			case "user":
				if _, err := user.Lookup(name); err != nil {
					bad("peercreds_mount_allow", "%q: no user %q on this machine", rule, name)
				}
			case "group":
				if _, err := user.LookupGroup(name); err != nil {
					bad("peercreds_mount_allow", "%q: no group %q on this machine", rule, name)
				}
			}
		}
	}
	return notes, errs
}

// isTLSEdge reports whether a process, by its command name or executable,
// is a tlsedge: this very binary, or one named tlsedge.
func isTLSEdge(comm, exe string) bool {
	if comm == "tlsedge" || filepath.Base(exe) == "tlsedge" {
		return true
	}
	self, err := os.Executable()
	return err == nil && exe != "" && self == exe
}

// tcpAddrs are the addresses Start binds for socket_host and socket_port.
func (s *Server) tcpAddrs() []string {
	host := strings.Trim(s.cfg.SocketHost, "[]")
	port := strconv.Itoa(s.cfg.SocketPort)
	if ip := net.ParseIP(host); ip != nil {
		return []string{net.JoinHostPort(host, port)}
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return []string{net.JoinHostPort(host, port)}
	}
	var out []string
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip.String(), port))
	}
	return out
}

func isID(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// certificateSummary lists what the terminator's adapter serves: each
// certificate's name, source and expiry, for `tlsedge check`.
func certificateSummary(name string, t *tlsadapter.Terminator, now time.Time) []string {
	l, ok := t.Adapter().(tlsadapter.CertificateLister)
	if !ok {
		return nil
	}
	var lines []string
	for _, c := range l.Certificates() {
		lines = append(lines, fmt.Sprintf("server %s: certificate %s (%s) expires %s, in %d days",
			name, c.Name, c.Source, c.NotAfter.UTC().Format(time.DateOnly), int(c.NotAfter.Sub(now).Hours()/24)))
	}
	return lines
}

// internalCAExists reports whether the local development CA is already in
// dataDir; check says it would be created rather than create it.
func internalCAExists(dataDir string) bool {
	_, err := os.Stat(filepath.Join(tlsadapter.DevCADir(dataDir), "ca-key.pem"))
	return !errors.Is(err, os.ErrNotExist)
}
