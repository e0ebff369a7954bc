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

// strippedHeaders are the identity headers in normalised form (lower case,
// '_' read as '-'). Upstreams built on CGI/WSGI conventions turn both
// "X-Remote-User" and "X_Remote_User" into HTTP_X_REMOTE_USER, so a client
// could smuggle an identity through the underscore spelling if only the
// canonical one were removed.
var strippedHeaders = []string{
	"x-remote-pid", "x-remote-uid", "x-remote-gid", "x-remote-user", "x-remote-group", "remote-user",
}

// IsIdentityHeader reports whether name is one of the identity headers in any
// spelling: any letter case, '_' in place of '-'. It runs on every header of
// every request, so it compares in place rather than building a normalised
// copy.
func IsIdentityHeader(name string) bool {
	for _, h := range strippedHeaders {
		if len(h) == len(name) && sameFolded(name, h) {
			return true
		}
	}
	return false
}

// sameFolded compares name with the normalised lower, reading name's
// upper-case ASCII as lower and '_' as '-'.
func sameFolded(name, lower string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// StripHeaders deletes every client-sent identity header from h, in every
// spelling IsIdentityHeader accepts, including keys stored without
// canonicalisation. A proxy must call it on every request it forwards, with or
// without peer credentials: only tlsedge may assert who the client is.
func StripHeaders(h http.Header) {
	for k := range h {
		if IsIdentityHeader(k) {
			delete(h, k)
		}
	}
}

// SetHeaders strips h (see StripHeaders) and then sets the identity headers
// from c. X-Remote-Uid and X-Remote-Gid are always set; X-Remote-Pid only when
// the OS reported a pid (non-zero); X-Remote-User and Remote-User only when the
// user name was resolved, X-Remote-Group only when the group name was. A nil c
// only strips.
func SetHeaders(h http.Header, c *Creds) {
	StripHeaders(h)
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
