//go:build linux || darwin

package archive

import "syscall"

// freeBytes returns the bytes an unprivileged process may still write on
// dir's file system.
func freeBytes(dir string) (free int64, ok bool, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false, err
	}
	return int64(st.Bavail) * int64(st.Bsize), true, nil
}
