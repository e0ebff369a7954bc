// Package peercred reads the credentials of the process on the other end of a
// UNIX socket (SO_PEERCRED on Linux, getpeereid/LOCAL_PEERCRED on BSD and
// macOS) and resolves them to user and group names.
//
// Credentials are read once per connection, at accept, before any byte of the
// request, so a client cannot change who it is mid-connection.
package peercred

import (
	"fmt"
	"log/slog"
)

// Creds are the credentials of a connected peer process.
type Creds struct {
	PID int32  // process ID; 0 where the OS does not report it
	UID uint32 // effective user ID
	GID uint32 // effective group ID

	// Filled only when names are resolved (peercreds_resolve). An unknown ID
	// leaves its name empty; it is never an error.
	User   string   // user name for UID
	Group  string   // group name for GID
	Groups []string // group names the user database lists User in, sorted
}

// String formats c for logs and error messages, e.g.
// "pid=42 uid=1000(alice) gid=1000(alice)".
func (c *Creds) String() string {
	if c == nil {
		return "unknown peer"
	}
	return fmt.Sprintf("pid=%d uid=%d%s gid=%d%s", c.PID, c.UID, paren(c.User), c.GID, paren(c.Group))
}

// LogValue groups the credentials under one slog attribute, so every log line
// about a peer carries the same keys.
func (c *Creds) LogValue() slog.Value {
	if c == nil {
		return slog.StringValue("unknown")
	}
	attrs := []slog.Attr{
		slog.Int64("pid", int64(c.PID)),
		slog.Uint64("uid", uint64(c.UID)),
		slog.Uint64("gid", uint64(c.GID)),
	}
	if c.User != "" {
		attrs = append(attrs, slog.String("user", c.User))
	}
	if c.Group != "" {
		attrs = append(attrs, slog.String("group", c.Group))
	}
	return slog.GroupValue(attrs...)
}

func paren(name string) string {
	if name == "" {
		return ""
	}
	return "(" + name + ")"
}
