package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MariaDB binaries, as the Debian packages (mariadb-server, galera-4)
// install them.
const (
	MariaDBServer  = "/usr/sbin/mariadbd"
	MariaDBInstall = "/usr/bin/mariadb-install-db"
	GaleraProvider = "/usr/lib/galera/libgalera_smm.so"
)

// MariaDB is a private mariadbd a test (or CI) started: its own data
// directory, a free loopback port, a unix socket inside the directory.
// It is never the machine's own server. It is started and ended by PID.
type MariaDB struct {
	Dir    string // holds data/, my.cnf, the socket and the error log
	Port   int
	Socket string
	// Started is how long the last Start took, from exec to the first
	// answered query.
	Started time.Duration

	extra []string // my.cnf lines beyond the defaults (Galera's)
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
}

// MariaDBOptions configure NewMariaDBServer.
type MariaDBOptions struct {
	// Dir is the directory to use; empty: a new one under os.TempDir (a
	// short path: the socket's must fit in 108 bytes).
	Dir string
	// NoInstall skips mariadb-install-db (a Galera joiner receives its
	// data by state transfer).
	NoInstall bool
	// Config is added to the [mariadbd] section of my.cnf.
	Config []string
	// Port is the port to listen on; 0: a free one.
	Port int
}

// HaveMariaDB reports whether the MariaDB server binaries are installed.
func HaveMariaDB() bool {
	for _, p := range []string{MariaDBServer, MariaDBInstall} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// FreePort returns a loopback TCP port nobody listens on at this moment.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// NewMariaDBServer prepares a private server (data directory and
// my.cnf, installing the system tables unless opts.NoInstall) without
// starting it.
func NewMariaDBServer(opts MariaDBOptions) (*MariaDB, error) {
	if !HaveMariaDB() {
		return nil, fmt.Errorf("mariadb: %s or %s missing (apt-get install mariadb-server)", MariaDBServer, MariaDBInstall)
	}
	dir := opts.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "tkmy"); err != nil {
			return nil, err
		}
	}
	port := opts.Port
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	m := &MariaDB{Dir: dir, Port: port, Socket: filepath.Join(dir, "s.sock"), extra: opts.Config}
	if len(m.Socket) > 100 {
		return nil, fmt.Errorf("mariadb: socket path %q too long", m.Socket)
	}
	if err := os.MkdirAll(m.dataDir(), 0o700); err != nil {
		return nil, err
	}
	if opts.NoInstall && os.Geteuid() == 0 {
		// A Galera joiner's state arrives by rsync, whose daemon drops
		// root for nobody: nobody must own the data directory.
		if err := errors.Join(os.Chmod(dir, 0o755), os.Chown(m.dataDir(), nobodyID, nobodyID)); err != nil {
			return nil, err
		}
	}
	if err := m.writeConfig(); err != nil {
		return nil, err
	}
	if !opts.NoInstall {
		out, err := exec.Command(MariaDBInstall, "--defaults-file="+m.cnf(), "--skip-test-db",
			"--auth-root-authentication-method=normal").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("mariadb-install-db: %w: %s", err, lastLines(string(out), 10))
		}
	}
	return m, nil
}

// nobodyID is the user and group ID of nobody on Debian.
const nobodyID = 65534

func (m *MariaDB) dataDir() string { return filepath.Join(m.Dir, "data") }
func (m *MariaDB) cnf() string     { return filepath.Join(m.Dir, "my.cnf") }

// ErrorLog returns the path of the server's error log.
func (m *MariaDB) ErrorLog() string { return filepath.Join(m.Dir, "error.log") }

func (m *MariaDB) writeConfig() error {
	init := filepath.Join(m.Dir, "init.sql")
	// root@localhost (the socket) exists after mariadb-install-db; TCP
	// from 127.0.0.1 needs its own account. The file runs at every start.
	if err := os.WriteFile(init, []byte("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n"+
		"GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"+
		"CREATE DATABASE IF NOT EXISTS test CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin;\n"), 0o600); err != nil {
		return err
	}
	lines := []string{
		"[mariadbd]",
		"datadir=" + m.dataDir(),
		"socket=" + m.Socket,
		"port=" + strconv.Itoa(m.Port),
		"bind-address=127.0.0.1",
		"pid-file=" + filepath.Join(m.Dir, "mariadbd.pid"),
		"log-error=" + m.ErrorLog(),
		"init-file=" + init,
		"skip-name-resolve",
		"innodb-buffer-pool-size=64M",
		"innodb-log-file-size=16M",
		"max-connections=500",
		"character-set-server=utf8mb4",
		"collation-server=utf8mb4_nopad_bin",
	}
	if os.Geteuid() == 0 {
		lines = append(lines, "user=root")
	}
	lines = append(lines, m.extra...)
	lines = append(lines, "[client]", "socket="+m.Socket, "user=root")
	return os.WriteFile(m.cnf(), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// URL returns a mysql:// URL of the server's database dbname, as root.
func (m *MariaDB) URL(dbname string) string {
	return fmt.Sprintf("mysql://root@127.0.0.1:%d/%s", m.Port, dbname)
}

// DSN returns the driver's data source name of the server's database
// dbname, as root over TCP.
func (m *MariaDB) DSN(dbname string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?parseTime=true&loc=UTC", m.Port, dbname)
}

// PID returns the server's process ID, 0 when it is not running.
func (m *MariaDB) PID() int {
	if m.cmd == nil || m.cmd.Process == nil || m.exited() {
		return 0
	}
	return m.cmd.Process.Pid
}

func (m *MariaDB) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Start starts the server and waits until it answers a query over TCP or
// ctx ends. With detach, the server is a session of its own that outlives
// the calling process (for CI, which ends it by PID).
func (m *MariaDB) Start(ctx context.Context, detach bool) error { return m.start(ctx, detach) }

func (m *MariaDB) start(ctx context.Context, detach bool, args ...string) error {
	if m.PID() != 0 {
		return errors.New("mariadb: already running")
	}
	start := time.Now()
	cmd := exec.Command(MariaDBServer, append([]string{"--defaults-file=" + m.cnf()}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: !detach, Setsid: detach}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(m.done)
	if err := m.wait(ctx, func(ctx context.Context, db *sql.DB) error { return db.PingContext(ctx) }); err != nil {
		_ = m.Kill()
		return err
	}
	m.Started = time.Since(start)
	return nil
}

// wait polls ready, on a fresh connection each time, until it succeeds,
// the server exits or ctx ends.
func (m *MariaDB) wait(ctx context.Context, ready func(context.Context, *sql.DB) error) error {
	var last error
	for {
		db, err := sql.Open("mysql", m.DSN("")+"&timeout=2s")
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = ready(pctx, db)
			cancel()
			db.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-m.done:
			return fmt.Errorf("mariadbd exited: %v; log: %s", last, m.logTail())
		case <-ctx.Done():
			return fmt.Errorf("mariadbd not ready: %w: %v; log: %s", ctx.Err(), last, m.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (m *MariaDB) logTail() string {
	b, _ := os.ReadFile(m.ErrorLog())
	return lastLines(string(b), 15)
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (m *MariaDB) Kill() error { return m.signal(syscall.SIGKILL, 30*time.Second) }

// Stop ends the server with SIGTERM (a clean shutdown) and waits up to a
// minute, then kills it.
func (m *MariaDB) Stop() error {
	if err := m.signal(syscall.SIGTERM, time.Minute); err != nil {
		return errors.Join(err, m.Kill())
	}
	return nil
}

func (m *MariaDB) signal(sig syscall.Signal, wait time.Duration) error {
	pid := m.PID()
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal mariadbd %d: %w", pid, err)
	}
	select {
	case <-m.done:
		return nil
	case <-time.After(wait):
		return fmt.Errorf("mariadbd %d still running %s after %s", pid, wait, sig)
	}
}

// Remove stops the server and removes its directory.
func (m *MariaDB) Remove() error {
	err := m.Stop()
	return errors.Join(err, os.RemoveAll(m.Dir))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
