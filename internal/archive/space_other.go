//go:build !linux && !darwin

package archive

// freeBytes cannot tell the free space on this system: extraction relies
// on the other limits, and on the write errors of a full disk.
func freeBytes(string) (free int64, ok bool, err error) { return 0, false, nil }
