package peercred

import (
	"net/http"
	"strconv"
)

// Header names tlsedge sets from peer credentials on requests it forwards,
// the HTTP form of cheroot's X_REMOTE_PID, X_REMOTE_UID, X_REMOTE_GID,
// REMOTE_USER, X_REMOTE_USER and X_REMOTE_GROUP environ keys.
const (
	HeaderPID        = "X-Remote-Pid"
	HeaderUID        = "X-Remote-Uid"
	HeaderGID        = "X-Remote-Gid"
	HeaderUser       = "X-Remote-User"
	HeaderGroup      = "X-Remote-Group"
	HeaderRemoteUser = "Remote-User"
)

// SetHeaders sets the identity headers from c on h, an upstream request's
// header; the ones a client sent were removed in front of every handler
// (policy.EdgeHeaders), and each set here replaces any value. X-Remote-Uid and X-Remote-Gid are always set; X-Remote-Pid only when
// the OS reported a pid (non-zero); X-Remote-User and Remote-User only when the
// user name was resolved, X-Remote-Group only when the group name was. A nil c
// sets nothing.
func SetHeaders(h http.Header, c *Creds) {
	if c == nil {
		return
	}
	if c.PID != 0 {
		h.Set(HeaderPID, strconv.FormatInt(int64(c.PID), 10))
	}
	h.Set(HeaderUID, strconv.FormatUint(uint64(c.UID), 10))
	h.Set(HeaderGID, strconv.FormatUint(uint64(c.GID), 10))
	if c.User != "" {
		h.Set(HeaderUser, c.User)
		h.Set(HeaderRemoteUser, c.User)
	}
	if c.Group != "" {
		h.Set(HeaderGroup, c.Group)
	}
}
