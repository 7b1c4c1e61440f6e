package dbtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// EnvRequirePgBouncer, when set to a non-empty value, makes PgBouncerURL
// fail instead of skip when the pgbouncer binary is missing. CI sets it.
const EnvRequirePgBouncer = "TURNKEEP_REQUIRE_PGBOUNCER"

// PgBouncerPoolSize is the number of server connections the PgBouncer of
// PgBouncerURL keeps per database: clients that open more connections than
// this share server connections between their transactions.
const PgBouncerPoolSize = 4

// pgBouncerDirs are searched after PATH: Debian installs the binary in
// /usr/sbin, which is not on every user's PATH.
var pgBouncerDirs = []string{"/usr/sbin", "/usr/local/sbin"}

// PgBouncerURL creates a fresh schema with PostgresURL, starts a PgBouncer
// in transaction pooling mode in front of the EnvPostgres server for the
// test, and returns a URL through PgBouncer and the direct URL of the same
// schema. PgBouncer is stopped at cleanup, before the schema is dropped.
//
// The URL through PgBouncer carries no search_path: under transaction
// pooling a session setting sent by the client would hold only on the
// server connection it was sent on. Instead the test gets a PgBouncer
// database alias, named after its schema, whose connect_query sets
// search_path on every server connection of that alias's pool.
//
// It skips the test when EnvPostgres is unset, and when no pgbouncer binary
// is found unless EnvRequirePgBouncer is set.
func PgBouncerURL(t testing.TB) (bouncer, direct string) {
	t.Helper()
	bin := findPgBouncer()
	if bin == "" {
		missing := "no pgbouncer on PATH or in " + strings.Join(pgBouncerDirs, ", ") + " (apt-get install pgbouncer)"
		if os.Getenv(EnvRequirePgBouncer) != "" {
			t.Fatalf("%s is set but %s", EnvRequirePgBouncer, missing)
		}
		t.Skipf("PgBouncer tests skipped: %s; set %s=1 to fail instead", missing, EnvRequirePgBouncer)
	}
	direct = PostgresURL(t) // skips without EnvPostgres
	du, err := url.Parse(direct)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgres, err)
	}
	schema := du.Query().Get("search_path")
	server, err := pgconn.ParseConfig(os.Getenv(EnvPostgres))
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgres, err)
	}

	dir := t.TempDir()
	var port int
	for attempt := 1; ; attempt++ {
		port = freePort(t)
		p, err := startPgBouncer(bin, dir, pgBouncerConfig(server, schema, dir, port), port)
		if err == nil {
			t.Cleanup(p.stop)
			break
		}
		// Another process may take the port between freePort and bind.
		if !errors.Is(err, errPortTaken) || attempt == 5 {
			t.Fatalf("start pgbouncer: %v", err)
		}
	}

	bu := *du
	bu.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	bu.Path = "/" + schema
	q := bu.Query()
	q.Del("search_path")
	bu.RawQuery = q.Encode()
	bouncer = bu.String()
	requireSchema(t, bouncer, schema)
	return bouncer, direct
}

// findPgBouncer returns the path of the pgbouncer binary, or "".
func findPgBouncer() string {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	for _, d := range pgBouncerDirs {
		p := filepath.Join(d, "pgbouncer")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pgBouncerConfig returns the pgbouncer.ini of one test: a single database
// alias named schema, on server, whose server connections use schema.
func pgBouncerConfig(server *pgconn.Config, schema, dir string, port int) string {
	db := fmt.Sprintf("host=%s port=%d dbname=%s user=%s connect_query='SET search_path TO %s'",
		server.Host, server.Port, server.Database, server.User, schema)
	if server.Password != "" {
		db += " password='" + strings.ReplaceAll(server.Password, "'", "''") + "'"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[databases]\n%s = %s\n\n[pgbouncer]\n", schema, db)
	fmt.Fprintf(&b, "listen_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\n", port)
	// auth_type any logs every client in as the user of the database
	// line, so the user list can stay empty.
	fmt.Fprintf(&b, "auth_type = any\nauth_file = %s\n", filepath.Join(dir, "userlist.txt"))
	fmt.Fprintf(&b, "pool_mode = transaction\ndefault_pool_size = %d\nmin_pool_size = 0\nreserve_pool_size = 0\n", PgBouncerPoolSize)
	// PgBouncer 1.18 refuses startup parameters it does not track unless
	// they are listed here. pgx sends none by default; extra_float_digits
	// is the one other drivers send. search_path is deliberately not
	// listed: a client sending one would silently land in another schema.
	b.WriteString("ignore_startup_parameters = extra_float_digits\n")
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root; it reads its files first and
		// then switches to this user.
		b.WriteString("user = nobody\n")
	}
	return b.String()
}

// errPortTaken is returned by startPgBouncer when its port was taken.
var errPortTaken = errors.New("port in use")

// pgBouncerProcess is a pgbouncer child process.
type pgBouncerProcess struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait returned
	log    *bytes.Buffer // stdout and stderr; read only after exited
}

// startPgBouncer writes config into dir, starts pgbouncer in the
// foreground (the test owns its PID) and waits until it listens.
func startPgBouncer(bin, dir, config string, port int) (*pgBouncerProcess, error) {
	ini := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(ini, []byte(config), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), nil, 0o600); err != nil {
		return nil, err
	}
	p := &pgBouncerProcess{cmd: exec.Command(bin, ini), exited: make(chan struct{}), log: new(bytes.Buffer)}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.exited:
			err := fmt.Errorf("pgbouncer exited at start: %s", strings.TrimSpace(p.log.String()))
			if strings.Contains(p.log.String(), "Address already in use") {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return nil, err
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("pgbouncer does not listen on %s after 15s: %s", addr, strings.TrimSpace(p.log.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process: SIGTERM (PgBouncer's fast shutdown), then SIGKILL
// after 5 s.
func (p *pgBouncerProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(5 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// requireSchema fails the test unless a connection through bouncer lands
// in schema. It uses the exec query mode, which works through PgBouncer
// whatever the URL says.
func requireSchema(t testing.TB, bouncer, schema string) {
	t.Helper()
	u, err := url.Parse(bouncer)
	if err != nil {
		t.Fatalf("parse pgbouncer url: %v", err)
	}
	q := u.Query()
	q.Set("default_query_exec_mode", "exec")
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatalf("open pgbouncer: %v", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var got string
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&got); err != nil {
		t.Fatalf("query through pgbouncer: %v", err)
	}
	if got != schema {
		t.Fatalf("through pgbouncer current_schema() = %q; want %q", got, schema)
	}
}
