package apps

import (
	"errors"
	"tlsedge/apps/appopt"
)

// Sentinels callers can test with errors.Is; messages are wrapped with the
// target or option at hand.
var (
	// ErrBadTarget reports a mount target New does not understand.
	ErrBadTarget = errors.New("apps: bad mount target")
	// ErrBadOption reports an Options field that fails Validate; it is a
	// config.ErrBadValue too.
	ErrBadOption = appopt.ErrBadOption
)
