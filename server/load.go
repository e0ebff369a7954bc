package server

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"tlsedge/config"
)

// FileConfig is what a config file says about servers: the main server's keys
// (server.KEY) and each extra server's (server.NAME.KEY).
type FileConfig struct {
	Path   string
	Main   []config.Entry
	Extras map[string][]config.Entry // by server name
	Other  []config.Entry            // keys outside server.*, for the caller
}

// SplitFile sorts a parsed file's entries by server. Keys that start with
// "server." but name no option are errors naming the line and the closest
// option.
func SplitFile(f *config.File) (*FileConfig, error) {
	fc := &FileConfig{Path: f.Path, Extras: map[string][]config.Entry{}}
	defaults := NewConfig()
	names := defaults.Options().Names()
	var errs []error
	for _, e := range f.Entries {
		rest, ok := strings.CutPrefix(e.Key, "server.")
		if !ok {
			fc.Other = append(fc.Other, e)
			continue
		}
		if slices.Contains(names, rest) {
			fc.Main = append(fc.Main, e)
			continue
		}
		if name, key, ok := strings.Cut(rest, "."); ok && slices.Contains(names, key) {
			if !validServerName(name) {
				errs = append(errs, &config.Error{Path: f.Path, Line: e.Line, Key: e.Key, Msg: fmt.Sprintf("server name %q: use letters, digits, - and _", name), Err: config.ErrUnknownOption})
				continue
			}
			fc.Extras[name] = append(fc.Extras[name], e)
			continue
		}
		errs = append(errs, unknownKey(f.Path, e, names))
	}
	return fc, errors.Join(errs...)
}

func validServerName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func unknownKey(path string, e config.Entry, names []string) error {
	key := e.Key
	last := key[strings.LastIndex(key, ".")+1:]
	msg := "unknown option"
	if s := config.Suggest(last, names); s != "" {
		msg += fmt.Sprintf("; did you mean %s?", strings.TrimSuffix(key, last)+s)
	} else {
		msg += " (tlsedge --help lists them)"
	}
	return &config.Error{Path: path, Line: e.Line, Key: key, Msg: msg, Err: config.ErrUnknownOption}
}

// Apply sets the entries onto c, returning every bad value as an error naming
// file, line, key and what is allowed.
func Apply(c *Config, path string, entries []config.Entry) error {
	t := c.Options()
	var errs []error
	for _, e := range entries {
		key := e.Key[strings.LastIndex(e.Key, ".")+1:]
		f, ok := t.Lookup(key)
		if !ok {
			errs = append(errs, unknownKey(path, e, t.Names()))
			continue
		}
		if err := f.SetValue(e.Value); err != nil {
			errs = append(errs, config.LocateItems(err, path, e))
		}
	}
	return errors.Join(errs...)
}

// ExtraNames lists the extra servers' names, sorted.
func (fc *FileConfig) ExtraNames() []string {
	names := slices.Collect(maps.Keys(fc.Extras))
	sort.Strings(names)
	return names
}

// Extra builds the config of the extra server name: a copy of main with the
// extra's own keys applied on top.
func (fc *FileConfig) Extra(main Config, name string) (Config, error) {
	c := main
	c.Name = name
	c.Listeners = nil

	err := Apply(&c, fc.Path, fc.Extras[name])
	return c, err
}
