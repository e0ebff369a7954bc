package control

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Options are the control_* options. The zero value disables the control
// socket.
type Options struct {
	ControlSocket   string   `opt:"control_socket" group:"Control socket" help:"UNIX socket path, or @name for a Linux abstract socket, of the local admin API used by tlsedge ctl (empty: off)"`
	ControlAllowUID []string `opt:"control_allow_uid" group:"Control socket" help:"uids besides root allowed to use the control socket, checked by peer credentials"`
	ControlAllowGID []string `opt:"control_allow_gid" group:"Control socket" help:"gids (effective gid of the client process) allowed to use the control socket"`
}

// Enabled reports whether a control socket is configured.
func (o *Options) Enabled() bool { return o.ControlSocket != "" }

// Validate returns every problem in o joined, each naming its key.
func (o *Options) Validate() error {
	var errs []error
	if o.ControlSocket != "" {
		if o.ControlSocket == "@" {
			errs = append(errs, errors.New("control_socket: an abstract socket needs a name after @"))
		}
		if strings.ContainsRune(o.ControlSocket, 0) {
			errs = append(errs, errors.New("control_socket: contains a NUL byte"))
		}
		// sun_path is 108 bytes on Linux and 104 on BSD and macOS, NUL
		// included; reject early rather than fail at bind.
		if len(o.ControlSocket) > 103 {
			errs = append(errs, fmt.Errorf("control_socket: %q is longer than the 103 bytes a UNIX socket path may have", o.ControlSocket))
		}
	} else if len(o.ControlAllowUID)+len(o.ControlAllowGID) > 0 {
		errs = append(errs, errors.New("control_allow_uid, control_allow_gid: set but control_socket is empty"))
	}
	if _, err := parseIDs("control_allow_uid", o.ControlAllowUID); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseIDs("control_allow_gid", o.ControlAllowGID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseIDs(key string, vals []string) ([]uint32, error) {
	var (
		ids  []uint32
		errs []error
	)
	for _, v := range vals {
		id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a numeric id", key, v))
			continue
		}
		ids = append(ids, uint32(id))
	}
	return ids, errors.Join(errs...)
}
