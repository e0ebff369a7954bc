package server

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// portHolder finds the process that listens on TCP port, from /proc: the
// listening sockets' inodes in /proc/net/tcp and tcp6, then the process
// whose descriptors include one of them. It answers what `check` needs to
// tell "this tlsedge already runs there" from "another program took the
// port". ok is false when the holder cannot be seen (another user's
// process without the right to read its descriptors, or no /proc).
func portHolder(port int) (pid int, comm, exe string, ok bool) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		listeningInodes(table, port, inodes)
	}
	if len(inodes) == 0 {
		return 0, "", "", false
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, "", "", false
	}
	for _, p := range procs {
		n, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name())
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] {
				c, _ := os.ReadFile(filepath.Join(dir, "comm"))
				e, _ := os.Readlink(filepath.Join(dir, "exe"))
				return n, strings.TrimSpace(string(c)), e, true
			}
		}
	}
	return 0, "", "", false
}

// listeningInodes adds the inodes of the sockets in LISTEN state (0A) on
// port from one /proc/net table.
func listeningInodes(table string, port int, into map[string]bool) {
	f, err := os.Open(table)
	if err != nil {
		return
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	sc.Scan() // the header line
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" || !strings.HasSuffix(fields[1], want) {
			continue
		}
		into[fields[9]] = true
	}
}
