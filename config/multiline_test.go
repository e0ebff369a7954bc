package config

import (
	"strings"
	"testing"
)

// TestMultiLineList: a list may run over several lines, one item a line,
// with comments and a trailing comma, and each item's line and column is
// kept so a problem inside an item can be placed exactly.
func TestMultiLineList(t *testing.T) {
	src := "[global]\n" +
		"server.policy = [\n" +
		"  \"allow peer.uid:0 path:/admin\",\n" +
		"  # a comment line\n" +
		"    'deny path:/admin', # why\n" +
		"  \"allow *\",\n" +
		"]\n" +
		"server.socket_port = 1\n"
	f, err := Parse("f.ini", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != 2 {
		t.Fatalf("entries = %+v", f.Entries)
	}
	e := f.Entries[0]
	want := []string{"allow peer.uid:0 path:/admin", "deny path:/admin", "allow *"}
	if strings.Join(e.Value.List, "|") != strings.Join(want, "|") || e.Line != 2 {
		t.Fatalf("entry = %+v", e)
	}
	wantPos := []Pos{{3, 3}, {5, 5}, {6, 3}}
	for i, p := range wantPos {
		if e.Items[i] != p {
			t.Errorf("item %d at %+v, want %+v", i, e.Items[i], p)
		}
	}
	if f.Entries[1].Line != 8 {
		t.Errorf("next entry on line %d, want 8", f.Entries[1].Line)
	}
	one, err := Parse("f.ini", []byte("[global]\nk = [\"a\",  \"b\"]\n"))
	if err != nil || one.Entries[0].Items[1] != (Pos{2, 12}) {
		t.Errorf("one-line items at %+v, %v", one.Entries[0].Items, err)
	}
	if _, err := Parse("f.ini", []byte("[global]\nk = [\n\"a\",\n")); err == nil || !strings.Contains(err.Error(), "f.ini:2: k: list has no closing ]") {
		t.Errorf("unclosed: %v", err)
	}
}

// TestMultiLineListLinear: lists over many lines, and many lines opening
// lists, parse in linear time (each line once).
func TestMultiLineListLinear(t *testing.T) {
	for name, src := range map[string]string{
		"many items":    "[global]\nk = [\n" + strings.Repeat("\"a\",\n", 50000) + "]\n",
		"many openings": "[global]\n" + strings.Repeat("k = [\n", 50000),
		"comments":      "[global]\nk = [\n" + strings.Repeat("\"a\" # x\n", 50000) + "]\n",
	} {
		t.Run(name, func(t *testing.T) { parseWithin(t, name, src) })
	}
}
