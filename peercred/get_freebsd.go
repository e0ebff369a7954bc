//go:build freebsd

package peercred

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// xucredVersion is XUCRED_VERSION from <sys/ucred.h>, 0 on every release
// so far; a different value means the struct layout changed under us.
const xucredVersion = 0

// getFD reads LOCAL_PEERCRED, which FreeBSD fills at connect time with the
// peer's effective uid and groups (the first being the effective gid). The
// pid shares a union with a reserved pointer that golang.org/x/sys does not
// expose, so PID stays 0 here rather than being read through unsafe offsets.
func getFD(fd uintptr) (*Creds, error) {
	xu, err := unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return nil, fmt.Errorf("peercred: getsockopt LOCAL_PEERCRED: %w", err)
	}
	if xu.Version != xucredVersion {
		return nil, fmt.Errorf("peercred: LOCAL_PEERCRED: unexpected xucred version %d", xu.Version)
	}
	c := &Creds{UID: xu.Uid}
	if xu.Ngroups > 0 {
		c.GID = xu.Groups[0]
	}
	return c, nil
}
