//go:build unix && !linux

package pgtest

import "syscall"

// serverProcAttr runs a server program as cred (nil: as the caller), in
// a process group of its own so that a Ctrl-C meant for the tests does not
// stop the server before Main does. Without Linux's Pdeathsig, a server
// whose test binary was killed outlives it; removeStale leaves its
// directory alone while it runs.
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
