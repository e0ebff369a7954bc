//go:build !linux && !darwin && !freebsd

package peercred

// getFD is not implemented here. OpenBSD (SO_PEERCRED with struct
// sockpeercred) and NetBSD (LOCAL_PEEREID) have the call, but golang.org/x/sys
// offers no typed wrapper for them and raw syscalls are not allowed on
// OpenBSD; Windows has no portable equivalent for AF_UNIX.
func getFD(uintptr) (*Creds, error) {
	return nil, ErrNotImplemented
}
