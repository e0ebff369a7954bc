package config

import (
	"errors"
	"fmt"
	"strings"
)

// The kinds of Error, for errors.Is.
var (
	// ErrUnknownOption is a key that names no option.
	ErrUnknownOption = errors.New("unknown option")
	// ErrBadValue is a value an option does not take.
	ErrBadValue = errors.New("bad value")
)

// KeyError is a bad value for key. Validation code returns it without a
// place; the loader, which knows where each key was set, locates it (Locate).
// format may wrap a cause with %w: errors.Is then finds both ErrBadValue
// and the cause.
func KeyError(key, format string, args ...any) *Error {
	cause := fmt.Errorf(format, args...)
	return &Error{Key: key, Msg: cause.Error(), Err: &badValue{cause}}
}

// badValue is ErrBadValue with the cause of the problem.
type badValue struct{ cause error }

func (b *badValue) Error() string   { return ErrBadValue.Error() + ": " + b.cause.Error() }
func (b *badValue) Unwrap() []error { return []error{ErrBadValue, b.cause} }

// Where tells where key was set: a file and line, or a flag ("--name", 0).
// ok is false when the key kept its default.
type Where func(key string) (path string, line int, ok bool)

// Locate returns err with each *Error in it (through errors.Join and
// wrapping) that names a key but no place given the place where that key was
// set. Other errors are kept as they are.
func Locate(err error, where Where) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Locate(e, where))
		}
		return errors.Join(out...)
	}
	var ce *Error
	if errors.As(err, &ce) && ce.Path == "" && ce.Key != "" {
		if path, line, ok := where(ce.Key); ok {
			located := *ce
			located.Path, located.Line = path, line
			if strings.HasPrefix(path, "--") {
				located.Msg = ce.Key + ": " + ce.Msg
			}
			return &located
		}
	}
	return err
}

// Prefix returns err with prefix put before the key of each *Error in it (a
// named server's options are server.NAME.KEY in a file). Other errors are
// kept as they are.
func Prefix(err error, prefix string) error {
	if err == nil || prefix == "" {
		return err
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Prefix(e, prefix))
		}
		return errors.Join(out...)
	}
	var ce *Error
	if errors.As(err, &ce) && ce.Key != "" && !strings.HasPrefix(ce.Key, prefix) {
		p := *ce
		p.Key = prefix + ce.Key
		return &p
	}
	return err
}

// SuggestValue returns ", did you mean X?" when word is close to one of the
// allowed words (or a usual synonym of a switch value), else "".
func SuggestValue(word string, allowed []string) string {
	w := strings.ToLower(strings.TrimSpace(word))
	for _, a := range allowed {
		switch {
		case strings.EqualFold(a, "true") && (w == "yes" || w == "on" || w == "y" || w == "enable" || w == "enabled"):
			return "; did you mean " + a + "?"
		case strings.EqualFold(a, "false") && (w == "no" || w == "off" || w == "n" || w == "disable" || w == "disabled"):
			return "; did you mean " + a + "?"
		}
	}
	if s := Suggest(w, allowed); s != "" {
		return "; did you mean " + s + "?"
	}
	return ""
}

// ItemError is a problem inside one item of a list option (a rule of a
// policy): the item's 0-based index and the 1-based column within the item's
// text. LocateItems turns it into a file, line and column.
type ItemError interface {
	error
	ItemPos() (item, col int)
}

// LocateItems returns err from setting entry e (of the file path) with each
// ItemError in it (through errors.Join) placed at its item's line and
// column: the item's opening quote plus the column inside it. Other errors
// get the entry's line.
func LocateItems(err error, path string, e Entry) error {
	if err == nil {
		return nil
	}
	var ie ItemError
	if !errors.As(err, &ie) {
		return &Error{Path: path, Line: e.Line, Key: e.Key, Msg: err.Error(), Err: ErrBadValue}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, x := range j.Unwrap() {
			out = append(out, LocateItems(x, path, e))
		}
		return errors.Join(out...)
	}
	out := &Error{Path: path, Line: e.Line, Key: e.Key, Msg: err.Error(), Err: ErrBadValue}
	if errors.As(err, &ie) {
		item, col := ie.ItemPos()
		if item >= 0 && item < len(e.Items) {
			out.Line, out.Col = e.Items[item].Line, e.Items[item].Col+col
		}
	}
	return out
}
