// Package peercred reads the credentials of the process on the other end of a
// UNIX socket (SO_PEERCRED on Linux, getpeereid/LOCAL_PEERCRED on BSD and
// macOS) and resolves them to user and group names.
//
// Credentials are read once per connection, at accept, before any byte of the
// request, so a client cannot change who it is mid-connection.
package peercred

// Creds are the credentials of a connected peer process.
type Creds struct {
	PID int32  // process ID; 0 where the OS does not report it
	UID uint32 // effective user ID
	GID uint32 // effective group ID

	// Filled only when names are resolved (peercreds_resolve). An unknown ID
	// leaves its name empty; it is never an error.
	User   string   // user name for UID
	Group  string   // group name for GID
	Groups []string // supplementary group names of User
}
