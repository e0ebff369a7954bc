package config

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Field is one option: a tagged struct field reachable from the struct given
// to Fields. Setting a Field writes through to that struct.
type Field struct {
	Name    string // snake_case option name
	Default string // as written on the command line
	Help    string
	Group   string
	Unit    string
	v       reflect.Value
	setOnce bool // list flags: the first Set replaces, later ones append
}

// Flag is the option's command-line name.
func (f *Field) Flag() string { return strings.ReplaceAll(f.Name, "_", "-") }

// ListValue is a list option parsed into a typed value when it is set
// (an allow-list, a set of curves): SetList parses and checks every item,
// so a bad one is an error at load, naming the option; List gives the items
// back as written.
type ListValue interface {
	SetList(items []string) error
	List() []string
}

var listValueType = reflect.TypeFor[ListValue]()

// IsList reports whether the option takes a list of values.
func (f *Field) IsList() bool {
	return f.v.Kind() == reflect.Slice && f.v.Type().Elem().Kind() == reflect.String ||
		f.v.Addr().Type().Implements(listValueType)
}

// list returns the items a list option holds now.
func (f *Field) list() []string {
	if lv, ok := f.v.Addr().Interface().(ListValue); ok {
		return lv.List()
	}
	return f.v.Interface().([]string)
}

// IsBool reports whether the option is a switch: a bool, or a type of its
// own that says it is one (IsBoolFlag, as flag and pflag ask).
func (f *Field) IsBool() bool {
	if f.v.Kind() == reflect.Bool {
		return true
	}
	b, ok := f.v.Addr().Interface().(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	fileModeType  = reflect.TypeFor[os.FileMode]()
	unmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Fields returns the options of the struct ptr points to, in field order,
// walking nested structs that carry no opt tag. It panics if ptr is not a
// pointer to a struct or a tag names an unsupported type: both are
// programming errors caught by the first test that runs.
func Fields(ptr any) []*Field {
	v := reflect.ValueOf(ptr)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic("config.Fields: want a pointer to a struct")
	}
	var out []*Field
	walk(v.Elem(), &out)
	return out
}

func walk(v reflect.Value, out *[]*Field) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, tagged := sf.Tag.Lookup("opt")
		if name == "-" {
			continue
		}
		fv := v.Field(i)
		if !tagged {
			if fv.Kind() == reflect.Struct && fv.Type() != durationType {
				walk(fv, out)
			}
			continue
		}
		f := &Field{Name: name, Default: sf.Tag.Get("default"), Help: sf.Tag.Get("help"),
			Group: sf.Tag.Get("group"), Unit: sf.Tag.Get("unit"), v: fv}
		if err := f.check(); err != nil {
			panic(fmt.Sprintf("config: field %s.%s: %v", t.Name(), sf.Name, err))
		}
		*out = append(*out, f)
	}
}

func (f *Field) check() error {
	if f.v.Addr().Type().Implements(unmarshalType) || f.v.Addr().Type().Implements(listValueType) {
		return nil
	}
	switch f.v.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Uint32:
		return nil
	case reflect.Slice:
		if f.IsList() {
			return nil
		}
	}
	return fmt.Errorf("unsupported option type %s", f.v.Type())
}

// Reset sets the field to its default.
func (f *Field) Reset() error {
	f.v.SetZero()
	f.setOnce = false
	if f.Default == "" {
		return nil
	}
	if f.IsList() {
		return f.SetList(SplitList(f.Default))
	}
	return f.set(f.Default)
}

// Set parses s into the field. For lists, the first Set replaces the current
// value and later ones append (a repeated flag), and s may hold several items
// separated by commas.
func (f *Field) Set(s string) error {
	if f.IsList() {
		items := f.splitItems(s)
		if f.setOnce {
			items = append(f.list(), items...)
		}
		f.setOnce = true
		return f.SetList(items)
	}
	return f.set(s)
}

// SetList sets a list option.
func (f *Field) SetList(items []string) error {
	if !f.IsList() {
		return fmt.Errorf("takes one value, not a list")
	}
	if lv, ok := f.v.Addr().Interface().(ListValue); ok {
		return lv.SetList(append([]string{}, items...))
	}
	f.v.Set(reflect.ValueOf(append([]string{}, items...)))
	return nil
}

// SetValue sets the field from a config-file value. None sets the zero value.
func (f *Field) SetValue(v Value) error {
	switch {
	case v.Kind == None:
		f.v.SetZero()
		return nil
	case v.Kind == List:
		return f.SetList(v.List)
	case f.IsList():
		return f.SetList(f.splitItems(v.Text))
	case f.IsBool() && v.Kind != Bool:
		return fmt.Errorf("%s is not a switch value: use True or False%s", v.Text, SuggestValue(v.Text, []string{"True", "False"}))
	}
	return f.set(v.Text)
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (f *Field) set(s string) error {
	if u, ok := f.v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch {
	case f.v.Type() == durationType:
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		f.v.SetInt(int64(d))
	case f.v.Type() == fileModeType:
		m, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("%q is not a file mode: use octal digits, like 0660", s)
		}
		f.v.SetUint(m)
	case f.v.Kind() == reflect.String:
		f.v.SetString(s)
	case f.v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false%s", s, SuggestValue(s, []string{"true", "false"}))
		}
		f.v.SetBool(b)
	case f.v.Kind() == reflect.Int64 && f.Unit == "bytes":
		n, err := ParseSize(s)
		if err != nil {
			return err
		}
		f.v.SetInt(n)
	case f.v.Kind() == reflect.Int || f.v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || f.v.OverflowInt(n) {
			return fmt.Errorf("%q is not a whole number", s)
		}
		f.v.SetInt(n)
	case f.v.Kind() == reflect.Uint32:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a whole number from 0 to %d", s, uint32(1<<32-1))
		}
		f.v.SetUint(n)
	}
	return nil
}

// String formats the field's current value as it would be written on the
// command line.
func (f *Field) String() string {
	if m, ok := f.v.Interface().(encoding.TextMarshaler); ok {
		b, _ := m.MarshalText()
		return string(b)
	}
	switch {
	case f.v.Type() == durationType:
		return time.Duration(f.v.Int()).String()
	case f.v.Type() == fileModeType:
		return fmt.Sprintf("%04o", f.v.Uint())
	case f.IsList():
		return strings.Join(f.list(), ",")
	case f.Unit == "bytes":
		return FormatSize(f.v.Int())
	}
	return fmt.Sprint(f.v.Interface())
}

// Type names the kind of value for help text.
func (f *Field) Type() string {
	switch {
	case f.v.Type() == durationType:
		return "duration"
	case f.v.Type() == fileModeType:
		return "mode"
	case f.Unit == "bytes":
		return "size"
	case f.IsList():
		return "list"
	case f.IsBool():
		return "bool"
	case f.v.Addr().Type().Implements(unmarshalType):
		return "word" // parsed from its text (an enumeration, a version), whatever Go type holds it
	case f.v.Kind() == reflect.Int || f.v.Kind() == reflect.Int64 || f.v.Kind() == reflect.Uint32:
		return "int"
	}
	return "string"
}

// WholeItems is implemented by list options whose items may hold commas
// (mount specs such as "/=text:hello, world"): each flag, and each string
// value in a file, is one item, never split at commas.
type WholeItems interface{ WholeItems() }

// splitItems splits s into the items of f: at commas, unless f takes
// whole items.
func (f *Field) splitItems(s string) []string {
	if _, ok := f.v.Addr().Interface().(WholeItems); ok {
		if s = strings.TrimSpace(s); s == "" {
			return nil
		}
		return []string{s}
	}
	return SplitList(s)
}

// ParseDuration accepts plain seconds ("10", "1.5") or a Go duration
// ("1.5s", "2m"). Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	const help = "use seconds (10) or a Go duration (1.5s, 2m, 1h)"
	if secs, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "nNiIxX") {
		if secs < 0 || secs > 1e9 {
			return 0, fmt.Errorf("%q is out of range: %s", s, help)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: %s", s, help)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative: %s", s, help)
	}
	return d, nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1},
}

// ParseSize accepts bytes ("512000") or a number with a unit: KiB, MiB, GiB
// (powers of 1024; K, M, G as in nginx mean the same), KB, MB, GB (powers of
// 1000). A plain -1 is kept for options where it means "no limit".
func ParseSize(s string) (int64, error) {
	const help = "use bytes (512000) or a size with a unit (500KiB, 100MiB, 1GiB)"
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(t, 64)
		if ferr != nil || mult == 1 || f < 0 || strings.ContainsAny(t, "nixp") {
			return 0, fmt.Errorf("%q is not a size: %s", s, help)
		}
		if f*float64(mult) >= 1<<62 {
			return 0, fmt.Errorf("%q is too large", s)
		}
		return int64(f * float64(mult)), nil
	}
	if n == -1 && mult == 1 {
		return -1, nil
	}
	if n < 0 {
		return 0, fmt.Errorf("%q is negative: %s", s, help)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// FormatSize writes n with the largest binary unit that divides it exactly.
func FormatSize(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n > 0 && n%u.m == 0 {
			return fmt.Sprintf("%d%s", n/u.m, u.s)
		}
	}
	return strconv.FormatInt(n, 10)
}

// Table indexes fields by name.
type Table struct {
	Fields []*Field
	byName map[string]*Field
}

// NewTable builds the table of the options of the struct ptr points to.
func NewTable(ptr any) *Table {
	t := &Table{Fields: Fields(ptr), byName: map[string]*Field{}}
	for _, f := range t.Fields {
		if _, dup := t.byName[f.Name]; dup {
			panic("config: option " + f.Name + " defined twice")
		}
		t.byName[f.Name] = f
	}
	return t
}

// Lookup returns the field named name.
func (t *Table) Lookup(name string) (*Field, bool) {
	f, ok := t.byName[name]
	return f, ok
}

// Reset sets every field to its default.
func (t *Table) Reset() error {
	var errs []error
	for _, f := range t.Fields {
		if err := f.Reset(); err != nil {
			errs = append(errs, fmt.Errorf("default of %s: %w", f.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Names lists the option names, sorted.
func (t *Table) Names() []string {
	names := make([]string, 0, len(t.Fields))
	for _, f := range t.Fields {
		names = append(names, f.Name)
	}
	sort.Strings(names)
	return names
}

// AddFlags registers each option on fs as --kebab-name.
func (t *Table) AddFlags(fs *pflag.FlagSet) {
	for _, f := range t.Fields {
		fl := fs.VarPF(f, f.Flag(), "", f.Help)
		if f.IsBool() {
			fl.NoOptDefVal = "true"
		}
		fl.DefValue = f.Default
		if f.Group != "" {
			_ = fs.SetAnnotation(f.Flag(), "group", []string{f.Group})
		}
	}
}

// Suggest returns the name among names closest to name, if it is close enough
// to be a likely typo.
func Suggest(name string, names []string) string {
	best, bestD := "", len(name)/3+2
	for _, n := range names {
		if d := distance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Defaults returns a T holding the default of every option, from the tags:
// the one place a default is written. Code that reads a zero value as "the
// default" (library users building options in Go) falls back to these. It
// panics on a bad default tag, a programming error the first test catches.
func Defaults[T any]() T {
	var v T
	if err := NewTable(&v).Reset(); err != nil {
		panic(err)
	}
	return v
}

// SplitListOf returns the items a list option holds now, as written; an
// empty list is an empty slice, not nil.
func SplitListOf(f *Field) []string {
	items := f.list()
	if items == nil {
		return []string{}
	}
	return items
}
