//go:build !linux

package httpcore

// physicalMemory is unknown here: DefaultBufferedMemory uses its cap.
func physicalMemory() int64 { return 0 }
