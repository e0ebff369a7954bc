package storage

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Location is the engine.storage option, parsed once when it is set: "" (files
// under the data directory), an absolute directory, or a PostgreSQL URL.
type Location struct {
	raw string // as written; MarshalText gives it back
	dir string // absolute; set for a directory
	dsn string // set for PostgreSQL
}

// ParseLocation parses s as the storage option.
func ParseLocation(s string) (Location, error) {
	var l Location
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// UnmarshalText accepts a directory path or a postgres:// (postgresql://)
// URL. A URL is checked by pgx's own parser, so a typo is an error at load
// rather than at the first connection.
func (l *Location) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	*l = Location{raw: s}
	switch {
	case s == "":
		return nil
	case strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://"):
		if _, err := pgxpool.ParseConfig(s); err != nil {
			// pgx redacts the password in its message.
			return fmt.Errorf("not a PostgreSQL URL: %v", unwrapAll(err))
		}
		l.dsn = s
		return nil
	case strings.Contains(s, "://"):
		u, _ := url.Parse(s)
		scheme := "?"
		if u != nil {
			scheme = u.Scheme
		}
		return fmt.Errorf("%s:// is not a storage tlsedge knows: use a directory or postgres://USER@HOST/DB", scheme)
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return err
	}
	l.dir = abs
	return nil
}

func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// MarshalText gives the option back as written (ctl config redacts the
// password of a URL).
func (l Location) MarshalText() ([]byte, error) { return []byte(l.raw), nil }

// String is the location safe to log: a URL's password is masked.
func (l Location) String() string {
	if l.dsn != "" {
		return RedactDSN(l.dsn)
	}
	return l.raw
}

// IsZero reports whether the option is unset (files under the data directory).
func (l Location) IsZero() bool { return l.raw == "" }

// Dir is the directory, or "" when the location is not one.
func (l Location) Dir() string { return l.dir }

// DSN is the PostgreSQL URL, or "" when the location is not one. It may hold
// a password: never log it, log String instead.
func (l Location) DSN() string { return l.dsn }

// RedactDSN masks the password in a postgres:// URL and in a password=
// query parameter; anything that does not parse is hidden whole.
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
