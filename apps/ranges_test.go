package apps

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rangeSpecs returns n range-specs made by f, comma-separated.
func rangeSpecs(n int, f func(i int) string) string {
	specs := make([]string, n)
	for i := range specs {
		specs[i] = f(i)
	}
	return strings.Join(specs, ",")
}

// TestStaticRanges sends Range headers through a real client and checks
// the answer: whatever the header, no answer is larger than the file plus
// multipartSlack; overlapping and adjacent ranges come back as one part;
// too many ranges and broken headers get the whole file.
func TestStaticRanges(t *testing.T) {
	root := t.TempDir()
	small := make([]byte, 10<<10) // 10 KiB, as in the report
	for i := range small {
		small[i] = byte(i * 7)
	}
	large := bytes.Repeat(small, 100) // 1000 KiB
	tiny := []byte("thirty bytes of plain text...\n")
	for name, b := range map[string][]byte{"small.bin": small, "large.bin": large, "tiny.txt": tiny} {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	front := serveTCP(t, mustNew(t, "dir:"+root, Env{}))
	client := &http.Client{Timeout: 30 * time.Second}

	tests := []struct {
		name   string
		file   string
		ranges []string // Range field lines
		status int
		parts  []rangePart // 206: the parts, one for a single-part answer
	}{
		{"10,000 times 0-0", "small.bin", []string{"bytes=" + rangeSpecs(10000, func(int) string { return "0-0" })}, 200, nil},
		{"120,000 ranges of 1 MB", "large.bin", []string{"bytes=" + rangeSpecs(120000, func(i int) string { return fmt.Sprintf("%d-%d", i%1000, i%1000) })}, 200, nil},
		{"overlapping", "small.bin", []string{"bytes=" + rangeSpecs(15, func(int) string { return "0-649" })}, 206, []rangePart{{"bytes 0-649/10240", small[:650]}}},
		{"overlapping out of order", "small.bin", []string{"bytes=100-199,0-149,150-300"}, 206, []rangePart{{"bytes 0-300/10240", small[:301]}}},
		{"adjacent", "small.bin", []string{"bytes=0-9,10-19"}, 206, []rangePart{{"bytes 0-19/10240", small[:20]}}},
		{"adjacent suffixes", "small.bin", []string{"bytes=-100,-50, 10000-10139"}, 206, []rangePart{{"bytes 10000-10239/10240", small[10000:]}}},
		{"two ranges", "small.bin", []string{"bytes=5000-5009,0-9"}, 206, []rangePart{{"bytes 5000-5009/10240", small[5000:5010]}, {"bytes 0-9/10240", small[:10]}}},
		{"two ranges, one coalesced", "small.bin", []string{"bytes=0-9,5000-5009,5-12"}, 206, []rangePart{{"bytes 0-12/10240", small[:13]}, {"bytes 5000-5009/10240", small[5000:5010]}}},
		{"16 ranges", "small.bin", []string{"bytes=" + rangeSpecs(16, func(i int) string { return fmt.Sprintf("%d-%d", 2*i, 2*i) })}, 206, nil},
		{"17 ranges", "small.bin", []string{"bytes=" + rangeSpecs(17, func(i int) string { return fmt.Sprintf("%d-%d", 2*i, 2*i) })}, 200, nil},
		{"17 unsatisfiable ranges", "small.bin", []string{"bytes=" + rangeSpecs(17, func(i int) string { return fmt.Sprintf("%d-", 20000+i) })}, 416, nil},
		{"parts cost more than the file", "tiny.txt", []string{"bytes=" + rangeSpecs(9, func(i int) string { return fmt.Sprintf("%d-%d", 2*i, 2*i) })}, 200, nil},
		{"unsatisfiable ones dropped", "small.bin", []string{"bytes=20000-,0-4"}, 206, []rangePart{{"bytes 0-4/10240", small[:5]}}},
		{"not a number", "small.bin", []string{"bytes=abc"}, 200, nil},
		{"last before first", "small.bin", []string{"bytes=5-1"}, 200, nil},
		{"other unit", "small.bin", []string{"items=0-1"}, 200, nil},
		{"space inside", "small.bin", []string{"bytes=0 - 1"}, 200, nil},
		{"empty set", "small.bin", []string{"bytes=,"}, 200, nil},
		{"two fields", "small.bin", []string{"bytes=0-1", "bytes=2-3"}, 200, nil},
		{"suffix zero", "small.bin", []string{"bytes=-0"}, 416, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := map[string][]byte{"small.bin": small, "large.bin": large, "tiny.txt": tiny}[tt.file]
			req, _ := http.NewRequest("GET", front+"/"+tt.file, nil)
			req.Header["Range"] = tt.ranges
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(body) > len(file)+multipartSlack {
				t.Errorf("%d bytes for a file of %d: amplified", len(body), len(file))
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (Content-Range %q, %d bytes), want %d", resp.StatusCode, resp.Header.Get("Content-Range"), len(body), tt.status)
			}
			switch {
			case tt.status == 200 && !bytes.Equal(body, file):
				t.Errorf("200 with %d bytes, want the whole file", len(body))
			case tt.status == 416 && resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(file)):
				t.Errorf("416 with Content-Range %q", resp.Header.Get("Content-Range"))
			case tt.status != 206 || tt.parts == nil:
			case len(tt.parts) == 1:
				if cr := resp.Header.Get("Content-Range"); cr != tt.parts[0].contentRange || !bytes.Equal(body, tt.parts[0].body) {
					t.Errorf("got %q with %d bytes, want %q with %d", cr, len(body), tt.parts[0].contentRange, len(tt.parts[0].body))
				}
			default:
				got := readParts(t, resp.Header.Get("Content-Type"), body)
				if len(got) != len(tt.parts) {
					t.Fatalf("%d parts, want %d", len(got), len(tt.parts))
				}
				for i, p := range got {
					if p.contentRange != tt.parts[i].contentRange || !bytes.Equal(p.body, tt.parts[i].body) {
						t.Errorf("part %d: %q with %d bytes, want %q with %d", i, p.contentRange, len(p.body), tt.parts[i].contentRange, len(tt.parts[i].body))
					}
				}
			}
		})
	}
}

type rangePart struct {
	contentRange string
	body         []byte
}

// readParts splits a multipart/byteranges body.
func readParts(t *testing.T, ctype string, body []byte) []rangePart {
	t.Helper()
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q, want multipart/byteranges", ctype)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts []rangePart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, rangePart{p.Header.Get("Content-Range"), b})
	}
}

// max_ranges is the mount's limit, not a constant.
func TestStaticMaxRangesOption(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f.txt"), []byte(strings.Repeat("0123456789", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	front := serveTCP(t, mustNew(t, "dir:"+root, Env{Options: Options{MaxRanges: 2}}))
	for header, want := range map[string]int{"bytes=0-1,10-11": 206, "bytes=0-1,10-11,20-21": 200, "bytes=0-1,1-2,2-3": 200} {
		req, _ := http.NewRequest("GET", front+"/f.txt", nil)
		req.Header.Set("Range", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", header, resp.StatusCode, want)
		}
	}
	if _, err := New("dir:"+root, Env{Options: Options{MaxRanges: -1}}); err == nil || !strings.Contains(err.Error(), "max_ranges") {
		t.Errorf("max_ranges -1: %v, want an error naming max_ranges", err)
	}
}
