package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Where Debian's postgresql-NN packages put the server binaries.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// notInstalled is the message of a missing installation.
const notInstalled = "PostgreSQL not installed: run ./scripts/setup.sh"

// dirPrefix starts the name of a cluster's temporary directory, so that
// stale ones can be found and removed.
const dirPrefix = "visage-pgtest-"

// ownerFile, in a cluster's directory, holds the process id of the test
// binary that owns the cluster.
const ownerFile = "owner.pid"

// superuser is the bootstrap role initdb creates; connections come over a
// socket only the cluster's owner (and root) can reach, with trust
// authentication.
const superuser = "postgres"

// Waits of the cluster's life cycle, generous because tests run beside
// other load (under nice, on few cores).
const (
	readyTimeout = 2 * time.Minute
	stopTimeout  = 30 * time.Second
)

// binaries are the two server programs the cluster needs.
type binaries struct {
	initdb, postgres string
}

// cluster is a private server, running unless halted.
type cluster struct {
	dir    string // the temporary directory: data/, the socket, the log
	bin    binaries
	cred   *syscall.Credential
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	log    string
}

// startCluster creates a cluster in a new temporary directory and starts
// its server.
func startCluster() (*cluster, error) {
	bin, err := findBinaries(debianBinGlob)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	removeStale(os.TempDir())
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("create cluster directory: %w", err)
	}
	c, err := initCluster(dir, bin, cred)
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return c, nil
}

// initCluster runs initdb in dir and starts the server.
func initCluster(dir string, bin binaries, cred *syscall.Credential) (*cluster, error) {
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, fmt.Errorf("write owner file: %w", err)
	}
	if cred != nil {
		// The server runs as the postgres user, who must own the directory
		// it creates the data directory, the socket and its lock file in.
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("hand the cluster directory to the postgres user: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := serverCommand(dir, cred, bin.initdb, "-D", data, "-U", superuser, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		hint := ""
		if cred != nil {
			hint = fmt.Sprintf(" (it runs as the postgres user, who must be able to reach %s: set TMPDIR to a directory it can)", dir)
		}
		return nil, fmt.Errorf("initdb%s: %w\n%s", hint, err, out)
	}
	c := &cluster{dir: dir, bin: bin, cred: cred, log: filepath.Join(dir, "postgres.log")}
	if err := c.launch(); err != nil {
		return nil, err
	}
	return c, nil
}

// launch starts the server on the cluster's data directory and waits
// until it accepts connections; if it does not, the server is killed and
// the directory removed. A server started again after halt listens on the
// same socket and appends to the same log.
func (c *cluster) launch() error {
	logFile, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	defer func() { _ = logFile.Close() }()
	c.exited = make(chan struct{})
	c.cmd = serverCommand(c.dir, c.cred, c.bin.postgres, serverArgs(filepath.Join(c.dir, "data"), c.dir)...)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		close(c.exited) // no server runs: halt and kill have nothing to do
		return fmt.Errorf("start postgres: %w", err)
	}
	cmd, exited := c.cmd, c.exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := c.waitReady(); err != nil {
		return errors.Join(err, c.kill())
	}
	return nil
}

// serverArgs are the server's arguments. The settings make the throwaway
// cluster fast and private: no TCP listener (the socket is in dir), no
// durability (a crash loses test databases, nothing else), enough
// connections for tests that open several pools at once.
func serverArgs(data, dir string) []string {
	args := []string{"-D", data, "-k", dir}
	for _, s := range []string{
		"listen_addresses=",
		"fsync=off",
		"synchronous_commit=off",
		"full_page_writes=off",
		"max_connections=200",
		"shared_buffers=32MB",
		"log_min_messages=warning",
	} {
		args = append(args, "-c", s)
	}
	return args
}

// serverCommand prepares a run of a server program in dir, as the
// postgres user when cred is set, with a minimal environment: no
// PGDATA, PGHOST or locale of the caller's can change what it does.
func serverCommand(dir string, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	cmd.SysProcAttr = serverProcAttr(cred)
	return cmd
}

// url is the cluster's maintenance database, over its socket.
func (c *cluster) url() *url.URL {
	return &url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Path:     "/postgres",
		RawQuery: url.Values{"host": {c.dir}, "sslmode": {"disable"}}.Encode(),
	}
}

// waitReady waits until the server accepts connections, failing early if
// it exits.
func (c *cluster) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.url().String())
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited at start-up: %s", c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready after %v: %w: %s", readyTimeout, err, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop shuts the server down and removes the cluster's directory.
func (c *cluster) stop() error {
	// SIGQUIT is PostgreSQL's immediate shutdown: the postmaster stops its
	// children and exits without a checkpoint, which a cluster about to
	// be deleted does not need.
	if err := c.halt(syscall.SIGQUIT); err != nil {
		return errors.Join(err, c.kill())
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove cluster directory: %w", err)
	}
	return nil
}

// halt sends the postmaster sig (SIGTERM smart, SIGINT fast, SIGQUIT
// immediate shutdown) and waits until it has exited, keeping the data
// directory for launch. Halting a server that has exited does nothing.
func (c *cluster) halt(sig syscall.Signal) error {
	if c.hasExited() {
		return nil
	}
	err := c.cmd.Process.Signal(sig)
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgres: %w", err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("postgres still running %v after %v", stopTimeout, sig)
	}
}

// kill ends the server at once and removes the cluster's directory. The
// postmaster's children notice its death and exit by themselves.
func (c *cluster) kill() error {
	if !c.hasExited() {
		err := c.cmd.Process.Kill()
		if err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("kill postgres: %w", err)
		}
		<-c.exited
	}
	return os.RemoveAll(c.dir)
}

// hasExited reports whether the server has exited (or never started).
func (c *cluster) hasExited() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// logTail returns the end of the server's log, for error messages.
func (c *cluster) logTail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const keep = 2000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(bytes.TrimSpace(b))
}

// findBinaries returns initdb and postgres of the newest version installed
// under glob, or else from PATH.
func findBinaries(glob string) (binaries, error) {
	dirs, _ := filepath.Glob(glob) // the pattern is constant and valid
	// Newest version first: "16" sorts after "9.6" by number, not by text.
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, d := range dirs {
		bin := binaries{initdb: filepath.Join(d, "initdb"), postgres: filepath.Join(d, "postgres")}
		if isExecutable(bin.initdb) && isExecutable(bin.postgres) {
			return bin, nil
		}
	}
	initdb, err1 := exec.LookPath("initdb")
	postgres, err2 := exec.LookPath("postgres")
	if err1 != nil || err2 != nil {
		return binaries{}, fmt.Errorf("%s (no initdb and postgres in %s or on PATH)", notInstalled, glob)
	}
	return binaries{initdb: initdb, postgres: postgres}, nil
}

// versionOf returns the major version a path's version directory (the
// parent of bin) names, or 0.
func versionOf(binDir string) int {
	v := filepath.Base(filepath.Dir(binDir))
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0
	}
	return n
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// serverCredential returns the identity to run initdb and postgres under:
// nil (the current user) unless that is root, which both refuse; then the
// postgres user that Debian's packages create.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%s (running as root needs the postgres OS user to run the server as: %v)", notInstalled, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has uid %q, gid %q: not numbers", u.Uid, u.Gid)
	}
	// No supplementary groups: root's must not leak to the server.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// removeStale removes the cluster directories under tmp whose test binary
// is gone (killed before Main could stop its cluster) and whose server is
// not running. A directory whose owner is unknown is left alone: it may
// be one being created this instant.
func removeStale(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*"))
	for _, d := range dirs {
		owner, ok := readPID(filepath.Join(d, ownerFile))
		if !ok || alive(owner) {
			continue
		}
		if pm, ok := readPID(filepath.Join(d, "data", "postmaster.pid")); ok && alive(pm) {
			continue
		}
		_ = os.RemoveAll(d)
	}
}

// readPID reads the process id on the first line of a file.
func readPID(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	return pid, err == nil && pid > 0
}

// alive reports whether process pid exists (possibly owned by another
// user, which signal 0 reports as EPERM).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
