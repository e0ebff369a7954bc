package apps

import (
	"errors"
	"fmt"

	"tlsedge/config"
)

// Sentinels callers can test with errors.Is; messages are wrapped with the
// target or option at hand.
var (
	// ErrBadTarget reports a mount target New does not understand.
	ErrBadTarget = errors.New("apps: bad mount target")
	// ErrBadOption reports an Options field that fails Validate; it is a
	// config.ErrBadValue too.
	ErrBadOption = fmt.Errorf("apps: %w", config.ErrBadValue)
)

// badOption is a bad value for key, located by the loader like any other.
func badOption(key, format string, args ...any) error {
	return &config.Error{Key: key, Msg: fmt.Sprintf(format, args...), Err: ErrBadOption}
}
