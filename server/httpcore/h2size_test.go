package httpcore

import (
	"testing"
	"unsafe"
)

// An idle (parked) h2 connection costs about its h2sconn: the struct must
// stay within the 768-byte size class, malloc header included (8 bytes for
// objects with pointers past 512 bytes). One more field past it moves every
// connection to the 896-byte class; put new fields in the padding instead
// (beside maxID, among the bools).
func TestH2ConnStructSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(h2sconn{}); n+8 > 768 {
		t.Errorf("h2sconn is %d bytes, %d with its malloc header: past the 768-byte size class", n, n+8)
	}
}
