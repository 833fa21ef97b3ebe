// Package localpg starts a throwaway PostgreSQL server from the locally
// installed server binaries: initdb into a temporary directory, wal_level =
// logical, a free port on 127.0.0.1, run as the postgres user when the caller
// is root, everything removed on Stop. Where no server is installed it
// installs Debian's packages (as root) or says exactly what to install.
// `cdcaudit demo` runs on one; the tests get theirs through internal/pgtest.
package localpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options tune a cluster. The zero value is fine.
type Options struct {
	// Settings are extra postgresql.conf settings (name → value).
	Settings map[string]string
	// Durable keeps fsync on; off by default: the server's data is thrown
	// away with it, so a crash of the machine loses nothing that matters.
	Durable bool
	// Logf reports progress (may be nil).
	Logf func(format string, args ...any)
}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	BinDir  string
	DataDir string
	Port    int
	LogFile string

	dir  string // removed on Stop
	cred *syscall.Credential
	opts Options

	mu   sync.Mutex
	proc *exec.Cmd
	done chan struct{}
}

// Start installs the server if needed (see EnsureInstalled), runs initdb
// into a fresh temporary directory and starts the server on a free port.
func Start(opts Options) (*Cluster, error) {
	bin, err := EnsureInstalled(opts.Logf)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cdcaudit-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{BinDir: bin, dir: dir, DataDir: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, "postgres.log"), opts: opts}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, and there is no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := c.initdb(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		c.Port, err = freePort()
		if err == nil {
			err = c.start()
		}
		if err == nil {
			return c, nil
		}
		if attempt == 4 {
			c.Stop()
			return nil, err
		}
	}
}

func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	// Own process group: a crash kills the postmaster and its backends at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return cmd
}

func (c *Cluster) initdb() error {
	cmd := c.command("initdb", "-D", c.DataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, tail(out, 2000))
	}
	conf := map[string]string{
		"wal_level":               "logical",
		"max_replication_slots":   "32",
		"max_wal_senders":         "32",
		"max_connections":         "200",
		"listen_addresses":        "'127.0.0.1'",
		"unix_socket_directories": "''",
		"timezone":                "'UTC'",
		"log_min_messages":        "warning",
		"log_line_prefix":         "'%m [%p] '",
	}
	if !c.opts.Durable {
		conf["fsync"] = "off"
		conf["full_page_writes"] = "off"
	}
	for k, v := range c.opts.Settings {
		conf[k] = v
	}
	var b strings.Builder
	b.WriteString("\n# cdcaudit: a throwaway server (internal/localpg)\n")
	for k, v := range conf {
		fmt.Fprintf(&b, "%s = %s\n", k, v)
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(b.String())
	return err
}

// start runs the postmaster directly (not through pg_ctl) so that it dies
// with us (Pdeathsig) if the test binary is killed.
func (c *Cluster) start() error {
	logf, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := c.command("postgres", "-D", c.DataDir, "-p", strconv.Itoa(c.Port))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	c.mu.Lock()
	c.proc, c.done = cmd, done
	c.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("postgres exited during start-up:\n%s", c.LogTail(3000))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.kill()
	return fmt.Errorf("postgres did not accept connections within 60s:\n%s", c.LogTail(3000))
}

// LogTail returns the end of the server log, for error messages.
func (c *Cluster) LogTail(n int) string {
	b, _ := os.ReadFile(c.LogFile)
	return tail(b, n)
}

// DSN returns a connection URL for database db as the superuser postgres.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// Exec runs SQL statements in database db.
func (c *Cluster) Exec(ctx context.Context, db string, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// CreateDatabase creates a database.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	return c.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// Restart stops the server (fast shutdown) and starts it again on the same port.
func (c *Cluster) Restart() error {
	if err := c.shutdown(syscall.SIGINT, 60*time.Second); err != nil {
		return err
	}
	return c.start()
}

// Crash kills the server with SIGKILL, as a power loss would.
func (c *Cluster) Crash() { c.kill() }

// StartAgain starts a stopped or crashed server. After a crash the old
// backends may still be leaving the shared memory for a moment: retry then.
func (c *Cluster) StartAgain() error {
	var err error
	for i := 0; i < 40; i++ {
		if err = c.start(); err == nil || !strings.Contains(err.Error(), "shared memory block") {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
	return err
}

func (c *Cluster) kill() { c.shutdown(syscall.SIGKILL, 30*time.Second) }

func (c *Cluster) shutdown(sig syscall.Signal, wait time.Duration) error {
	c.mu.Lock()
	proc, done := c.proc, c.done
	c.proc = nil
	c.mu.Unlock()
	if proc == nil {
		return nil
	}
	if sig == syscall.SIGKILL {
		syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
	} else {
		proc.Process.Signal(sig)
	}
	select {
	case <-done:
	case <-time.After(wait):
		proc.Process.Kill()
		<-done
		return errors.New("postgres did not shut down in time; killed")
	}
	if sig == syscall.SIGKILL {
		// Backends outlive a SIGKILLed postmaster for a moment; they hold the
		// shared memory and the port.
		waitGroupGone(proc.Process.Pid)
	}
	return nil
}

// waitGroupGone waits until every process of the group has exited: a new
// postmaster refuses to start while old backends hold the shared memory.
func waitGroupGone(pgid int) {
	for i := 0; i < 400; i++ {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Stop shuts the server down and removes its files.
func (c *Cluster) Stop() {
	if err := c.shutdown(syscall.SIGINT, 30*time.Second); err != nil {
		c.kill()
	}
	os.RemoveAll(c.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
