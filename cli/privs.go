package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// dropPrivileges switches to userName (and groupName, or the user's primary
// group) after the listeners are bound: supplementary groups first, then the
// group, then the user, since a process that has given up root can change
// neither afterwards. Go applies each to every thread of the process.
//
// The data directory (local CA, ACME account and certificates) is handed to
// the new user first: certificates renewed later are written there.
func dropPrivileges(userName, groupName, dataDir string, log *slog.Logger) error {
	if userName == "" {
		return nil
	}
	u, err := lookupUser(userName)
	if err != nil {
		return fmt.Errorf("user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if groupName != "" {
		g, err := lookupGroup(groupName)
		if err != nil {
			return fmt.Errorf("group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	groups := []int{gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if n, err := strconv.Atoi(s); err == nil && n != gid {
				groups = append(groups, n)
			}
		}
	}
	if os.Geteuid() != 0 {
		if os.Geteuid() == uid {
			return nil // already that user
		}
		return fmt.Errorf("user: switching to %s needs root (running as uid %d)", userName, os.Geteuid())
	}
	if dataDir != "" {
		if err := chownTree(dataDir, uid, gid); err != nil {
			return fmt.Errorf("user: handing the data directory to %s: %w", userName, err)
		}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("user: setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("group: setgid(%d): %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("user: setuid(%d): %w", uid, err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid || os.Getgid() != gid {
		return fmt.Errorf("user: privileges not dropped (uid %d, euid %d, gid %d)", os.Getuid(), os.Geteuid(), os.Getgid())
	}
	log.Info("dropped privileges", "user", u.Username, "uid", uid, "gid", gid)
	return nil
}

func lookupUser(s string) (*user.User, error) {
	if _, err := strconv.Atoi(s); err == nil {
		if u, err := user.LookupId(s); err == nil {
			return u, nil
		}
		return &user.User{Uid: s, Gid: s, Username: s}, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return nil, fmt.Errorf("no user %q on this system", s)
	}
	return u, nil
}

func lookupGroup(s string) (*user.Group, error) {
	if _, err := strconv.Atoi(s); err == nil {
		return &user.Group{Gid: s, Name: s}, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return nil, fmt.Errorf("no group %q on this system", s)
	}
	return g, nil
}

// chownTree gives dir and everything below it to uid:gid, without following
// symbolic links.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}
