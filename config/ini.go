package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Kind is the type of a value written in a config file.
type Kind int

// The kinds of value a config file may hold, as in the seeds' Python-literal
// values.
const (
	Number Kind = iota // 8443, 1.5, -1
	String             // "text" or 'text'
	Bool               // True or False
	None               // None: the option's zero value
	List               // ["a", "b"] or [1, 2]
)

// Value is one parsed value.
type Value struct {
	Kind Kind
	Text string   // Number: as written; String: unquoted; Bool: "true"/"false"
	List []string // List: each element as Text would hold it
}

// Entry is one key = value line (or lines: a list may run over several,
// one item a line, up to a line starting with "]").
type Entry struct {
	Section string
	Key     string
	Value   Value
	Line    int
	Items   []Pos // where each list item starts; nil for other values
}

// Pos is a place in a file: 1-based line and column.
type Pos struct{ Line, Col int }

// File is a parsed config file.
type File struct {
	Path    string
	Entries []Entry
}

// Error is a problem with an option: its key, and where it was set (a file
// and line, or a flag) once the loader has located it. Err is the kind of
// problem, ErrUnknownOption or ErrBadValue (or a syntax error in a file),
// so that callers can use errors.Is.
type Error struct {
	Path string // the config file, or "--flag-name" for a flag; "" until located
	Line int    // the line in Path; 0 for a flag or when unknown
	Col  int    // the column on Line, when known (a rule in a list); else 0
	Key  string // may be empty
	Msg  string
	Err  error // ErrUnknownOption, ErrBadValue, or nil for a syntax error
}

func (e *Error) Error() string {
	loc := e.Path
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.Path, e.Line)
		if e.Col > 0 {
			loc += fmt.Sprintf(":%d", e.Col)
		}
	}
	switch {
	case loc == "" && e.Key != "":
		return fmt.Sprintf("%s: %s", e.Key, e.Msg)
	case loc == "":
		return e.Msg
	case e.Key != "" && !strings.HasPrefix(e.Path, "--"):
		return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// Unwrap returns the kind of problem.
func (e *Error) Unwrap() error { return e.Err }

// MaxFileSize bounds what ReadFile reads: a config file is small, and a
// mistaken path to a large file should fail fast rather than fill memory.
const MaxFileSize = 1 << 20

// ReadFile reads and parses the config file at path.
func ReadFile(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w (check the --config path)", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("larger than %d bytes; is this the right file?", MaxFileSize)}
	}
	return Parse(path, data)
}

// Parse parses config file text. Errors are *Error values joined together,
// one for each bad line.
func Parse(path string, data []byte) (*File, error) {
	f := &File{Path: path}
	var errs []error
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxFileSize)
	for n := 1; sc.Scan(); n++ {
		full := sc.Text()
		line := strings.TrimSpace(full)
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				errs = append(errs, &Error{Path: path, Line: n, Msg: fmt.Sprintf("section header %q is missing its closing ]", line)})
				continue
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			if section != "global" {
				errs = append(errs, &Error{Path: path, Line: n, Msg: fmt.Sprintf("unknown section [%s]: tlsedge reads only [global]", section)})
			}
			continue
		}
		key, _, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			errs = append(errs, &Error{Path: path, Line: n, Msg: fmt.Sprintf("expected key = value, got %q", line)})
			continue
		}
		if section == "" {
			errs = append(errs, &Error{Path: path, Line: n, Key: key, Msg: "key before any section: put it under [global]"})
			continue
		}
		if section != "global" {
			continue // already reported at the section header
		}
		// The value's text from its first character, and where that is.
		start := strings.Index(full, "=") + 1
		start += len(full[start:]) - len(strings.TrimLeft(full[start:], " \t"))
		text, first := strings.TrimRight(full[start:], " \t"), n
		if opensList(text) {
			// A list over several lines, closed by a line starting with "]".
			closed := false
			var b strings.Builder
			b.WriteString(text)
			for sc.Scan() {
				n++
				next := sc.Text()
				if t := strings.TrimSpace(next); t != "" && (t[0] == '#' || t[0] == ';') {
					next = "" // a comment line inside the list
				}
				b.WriteByte('\n')
				b.WriteString(next)
				if strings.HasPrefix(strings.TrimSpace(next), "]") {
					closed = true
					break
				}
			}
			text = b.String()
			if !closed {
				errs = append(errs, &Error{Path: path, Line: first, Key: key, Msg: "list has no closing ]: end a list written over several lines with a line starting with ]"})
				continue
			}
		}
		v, offs, err := parseValueAt(text)
		if err != nil {
			errs = append(errs, &Error{Path: path, Line: first, Key: key, Msg: err.Error()})
			continue
		}
		e := Entry{Section: section, Key: key, Value: v, Line: first, Items: itemPos(text, offs, first, start+1)}
		f.Entries = append(f.Entries, e)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, &Error{Path: path, Msg: err.Error()})
	}
	return f, errors.Join(errs...)
}

const valueHelp = `use a number (8443), a quoted string ("text"), True, False, None or a list (["a", "b"])`

// opensList reports whether a value's first line opens a list continued on
// the next lines: "[" alone (or with a comment), or items ending in a comma
// with no "]".
func opensList(text string) bool {
	rest, ok := strings.CutPrefix(text, "[")
	if !ok {
		return false
	}
	rest = strings.TrimSpace(rest)
	return rest == "" || rest[0] == '#' || rest[0] == ';' || strings.HasSuffix(rest, ",") && !strings.Contains(rest, "]")
}

// itemPos turns offsets into text (ascending), which starts at line, col,
// into places, in one pass over text.
func itemPos(text string, offs []int, line, col int) []Pos {
	var out []Pos
	at, lastNL := 0, -1
	for _, off := range offs {
		for ; at < off; at++ {
			if text[at] == '\n' {
				line++
				lastNL = at
			}
		}
		if lastNL < 0 {
			out = append(out, Pos{Line: line, Col: col + off})
		} else {
			out = append(out, Pos{Line: line, Col: off - lastNL})
		}
	}
	return out
}

// ParseValue parses one value as written after "=". A comment may follow it
// (" # why" or " ; why").
func ParseValue(s string) (Value, error) {
	v, _, err := parseValueAt(strings.TrimSpace(s))
	return v, err
}

// parseValueAt is ParseValue on s as it starts in the file, also returning
// the offset in s of each list item.
func parseValueAt(s string) (Value, []int, error) {
	if strings.HasPrefix(s, "[") {
		return parseList(s)
	}
	v, err := parseScalar(s)
	return v, nil, err
}

func parseScalar(s string) (Value, error) {
	s = strings.TrimSpace(s)
	if s != "" && s[0] != '"' && s[0] != '\'' && s[0] != '[' {
		// Numbers and words hold no '#' or ';', so a comment starts at the first.
		if i := strings.IndexAny(s, "#;"); i >= 0 {
			s = strings.TrimSpace(s[:i])
		}
	}
	switch s {
	case "":
		return Value{}, errors.New("missing value: " + valueHelp)
	case "True", "true":
		return Value{Kind: Bool, Text: "true"}, nil
	case "False", "false":
		return Value{Kind: Bool, Text: "false"}, nil
	case "None":
		return Value{Kind: None}, nil
	}
	if s[0] == '[' {
		v, _, err := parseList(s)
		return v, err
	}
	if s[0] == '"' || s[0] == '\'' {
		str, rest, err := parseString(s)
		if err != nil {
			return Value{}, err
		}
		if !isComment(rest) {
			return Value{}, fmt.Errorf("unexpected %q after the closing quote", rest)
		}
		return Value{Kind: String, Text: str}, nil
	}
	if isNumber(s) {
		return Value{Kind: Number, Text: s}, nil
	}
	return Value{}, fmt.Errorf("%q is not a value: %s (strings need quotes: %q)", s, valueHelp, s)
}

// isComment reports whether what follows a value is empty or a comment.
func isComment(rest string) bool {
	rest = strings.TrimSpace(rest)
	return rest == "" || rest[0] == '#' || rest[0] == ';'
}

func isNumber(s string) bool {
	s = strings.ReplaceAll(s, "_", "")
	if _, err := strconv.ParseInt(s, 0, 64); err == nil {
		return true
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && !strings.ContainsAny(s, "nNiI") // no NaN or Inf
}

// parseString reads a quoted string at the start of s, returning it unquoted
// and the rest of s. Escapes: \\ \" \' \n \t.
func parseString(s string) (string, string, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q:
			return b.String(), s[i+1:], nil
		case c == '\n':
			return "", "", fmt.Errorf("string %s has no closing %c on its line", s[:i], q)
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '\\', '"', '\'':
				b.WriteByte(s[i])
			default:
				return "", "", fmt.Errorf(`unknown escape \%c in string (use \\, \", \', \n or \t)`, s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("string %s has no closing %c", s, q)
}

func parseList(s string) (Value, []int, error) {
	v := Value{Kind: List, List: []string{}}
	var offs []int
	rest := strings.TrimSpace(s[1:])
	for {
		rest = skipComment(rest)
		if rest == "" {
			return Value{}, nil, errors.New("list has no closing ]")
		}
		if rest[0] == ']' {
			if !isComment(rest[1:]) {
				return Value{}, nil, fmt.Errorf("unexpected %q after the closing ]", rest[1:])
			}
			return v, offs, nil
		}
		offs = append(offs, len(s)-len(rest))
		var item string
		if rest[0] == '"' || rest[0] == '\'' {
			str, r, err := parseString(rest)
			if err != nil {
				return Value{}, nil, err
			}
			item, rest = str, r
		} else {
			// A list holds no lists. Refusing "[" here, before looking for the
			// item's end, keeps parsing linear: handing "[[[[..." to ParseValue
			// would scan the rest of the line once for every bracket.
			if rest[0] == '[' {
				return Value{}, nil, errors.New("list items cannot be lists: use numbers, quoted strings, True or False")
			}
			end := strings.IndexAny(rest, ",]\n")
			if end < 0 {
				end = len(rest)
			}
			item, rest = strings.TrimSpace(rest[:end]), rest[end:]
			elem, err := ParseValue(item)
			if err != nil || elem.Kind == List || elem.Kind == None {
				return Value{}, nil, fmt.Errorf("list item %q: use numbers, quoted strings, True or False", item)
			}
			item = elem.Text
		}
		v.List = append(v.List, item)
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return Value{}, nil, errors.New("list has no closing ]")
		}
		if strings.HasPrefix(rest, ",") {
			rest = strings.TrimSpace(rest[1:])
		} else if r := skipComment(rest); strings.HasPrefix(r, "]") {
			rest = r
		} else {
			return Value{}, nil, fmt.Errorf("list items must be separated by commas near %q", rest)
		}
	}
}

// skipComment drops a comment running to the end of its line from the start
// of rest, in a list written over several lines ("a", # why).
func skipComment(rest string) string {
	for rest != "" && (rest[0] == '#' || rest[0] == ';') {
		nl := strings.IndexByte(rest, '\n')
		if nl < 0 {
			return rest // on the list's last line: not a comment but an error
		}
		rest = strings.TrimSpace(rest[nl+1:])
	}
	return rest
}
