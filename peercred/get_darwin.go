//go:build darwin

package peercred

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// xucredVersion is XUCRED_VERSION from <sys/ucred.h>, 0 on every release
// so far; a different value means the struct layout changed under us.
const xucredVersion = 0

// getFD reads LOCAL_PEERCRED (effective uid and groups, the first of which is
// the effective gid) and LOCAL_PEERPID. macOS records both at connect time.
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
	pid, err := unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	if err != nil {
		return nil, fmt.Errorf("peercred: getsockopt LOCAL_PEERPID: %w", err)
	}
	c.PID = int32(pid)
	return c, nil
}
