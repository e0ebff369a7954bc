package peercred

import (
	"fmt"
	"os/user"
	"strconv"
)

// LookupUID returns the uid named by s: a decimal number is taken as is (it
// need not exist in the user database, as with chown), anything else is looked
// up as a user name. It serves options such as socket_file_owner.
func LookupUID(s string) (uint32, error) {
	if s == "" {
		return 0, fmt.Errorf("peercred: empty user")
	}
	if id, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(id), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("peercred: user %q: %w", s, err)
	}
	id, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("peercred: user %q has non-numeric uid %q", s, u.Uid)
	}
	return uint32(id), nil
}

// LookupGID returns the gid named by s: a decimal number as is, anything else
// looked up as a group name. It serves options such as socket_file_group.
func LookupGID(s string) (uint32, error) {
	if s == "" {
		return 0, fmt.Errorf("peercred: empty group")
	}
	if id, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(id), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("peercred: group %q: %w", s, err)
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("peercred: group %q has non-numeric gid %q", s, g.Gid)
	}
	return uint32(id), nil
}
