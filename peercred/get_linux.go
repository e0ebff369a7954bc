//go:build linux

package peercred

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// getFD reads SO_PEERCRED: the pid, effective uid and effective gid the peer
// had when it called connect(2) (or socketpair(2)). The kernel keeps that
// snapshot, so a peer that later drops or gains privileges is still seen as
// who it was when it connected; a pid of 0 means the peer is in another pid
// namespace the kernel could not map.
func getFD(fd uintptr) (*Creds, error) {
	uc, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return nil, fmt.Errorf("peercred: getsockopt SO_PEERCRED: %w", err)
	}
	return &Creds{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}, nil
}
