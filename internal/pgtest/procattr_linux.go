package pgtest

import "syscall"

// serverProcAttr runs a server program as cred (nil: as the caller), in
// a process group of its own so that a Ctrl-C meant for the tests does not
// stop the server before Main does.
//
// Pdeathsig sends the postmaster an immediate shutdown (SIGQUIT) when the
// test binary dies without reaching Main's clean-up: a panic, a -timeout
// or a kill leaves no server behind. The kernel sends it when the thread
// that started the process exits; the Go runtime does not end its
// threads (only ones locked by a goroutine that exits, and the server is
// not started from such a goroutine), so in practice that is when the
// process ends.
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
}
