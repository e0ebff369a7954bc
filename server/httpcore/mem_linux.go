package httpcore

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// physicalMemory is the memory this process may use: the machine's RAM, or
// the cgroup (v2) limit of a container when that is lower; 0 if unknown.
func physicalMemory() int64 {
	var si syscall.Sysinfo_t
	var n int64
	if syscall.Sysinfo(&si) == nil {
		n = int64(si.Totalram) * int64(si.Unit)
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && (n == 0 || v < n) {
			n = v // "max" (no limit) does not parse
		}
	}
	return n
}
