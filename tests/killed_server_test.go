package tests

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

// envRequirePrivatePG, when set to a non-empty value, makes the tests that
// start a private PostgreSQL fail instead of skip when its binaries are
// missing.
const envRequirePrivatePG = "TURNKEEP_REQUIRE_PRIVATE_PG"

// killedDeadline is the context deadline of each call made against the
// killed server; a call must return by it, plus killedSlack for the
// scheduling of a busy machine under -race.
const (
	killedDeadline = 2 * time.Second
	killedSlack    = 500 * time.Millisecond
)

// TestKilledServer runs saves and loads against a PostgreSQL server of its
// own and SIGKILLs the server (postmaster and backends) in the middle of
// them. From then on every call of the memory, the backend and the DB must
// return an error by its context's deadline, never nil, a panic or a hang;
// Close must return without panic or hang. Restarted on the same data
// directory, the server holds every turn whose save was acknowledged.
//
// The machine's own PostgreSQL is never touched: the server runs from the
// PostgreSQL binaries on a free loopback port with a data directory under
// t.TempDir(). The test skips when the binaries are missing, unless
// TURNKEEP_REQUIRE_PRIVATE_PG is set.
func TestKilledServer(t *testing.T) {
	pg := startPrivatePG(t)
	ctx := context.Background()
	db, err := dataflow.Open(ctx, pg.url(), dataflow.WithEnsureBackoff(10*time.Millisecond, 100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	b, err := backend.NewDataFlowBackend(db)
	require.NoError(t, err)
	m, err := memory.NewPersistentBufferMemory(b, memory.WithMaxTurns(1<<20))
	require.NoError(t, err)

	// A real export, for Import to read once the server is dead.
	require.NoError(t, m.SaveTurn(ctx, "exported", idTurn("e1")))
	var export bytes.Buffer
	require.NoError(t, m.Export(ctx, "exported", &export))

	// call runs one call under a killedDeadline context, failing the test
	// if it panics or outlives the deadline.
	call := func(name string, f func(ctx context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, killedDeadline)
		defer cancel()
		start := time.Now()
		err := callNoPanic(t, name, func() error { return f(cctx) })
		if d := time.Since(start); d > killedDeadline+killedSlack {
			t.Errorf("%s returned after %v; its deadline was %v", name, d, killedDeadline)
		}
		return err
	}

	// The load: savers, each on a session of its own, and a loader.
	const savers = 3
	var (
		killedAt atomic.Int64 // UnixNano once the server is dead; 0 before
		acked    [savers][]string
		failed   [savers][]string
		afterOK  atomic.Int64 // calls begun after the kill that returned nil
		afterN   atomic.Int64 // calls begun after the kill
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		ackedN   atomic.Int64
	)
	after := func(start time.Time, err error) {
		if k := killedAt.Load(); k != 0 && start.UnixNano() > k {
			afterN.Add(1)
			if err == nil {
				afterOK.Add(1)
			}
		}
	}
	for w := range savers {
		wg.Go(func() {
			session := fmt.Sprintf("killed-%d", w)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("t%05d", i)
				start := time.Now()
				err := call("SaveTurn", func(ctx context.Context) error { return m.SaveTurn(ctx, session, idTurn(id)) })
				after(start, err)
				if err != nil {
					failed[w] = append(failed[w], id)
					time.Sleep(5 * time.Millisecond) // a dead server fails at once: do not spin
				} else {
					acked[w] = append(acked[w], id)
					ackedN.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			err := call("LoadContext", func(ctx context.Context) error {
				_, err := m.LoadContext(ctx, "killed-0")
				return err
			})
			after(start, err)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
	})

	// Kill it mid-load, once the load is well under way.
	for deadline := time.Now().Add(30 * time.Second); ackedN.Load() < 60; {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("only %d saves acknowledged in 30 s before the kill", ackedN.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	pg.kill(t)
	killedAt.Store(time.Now().UnixNano())
	time.Sleep(time.Second) // the load goes on against the dead server
	close(stop)
	if !waitTimeout(&wg, 2*(killedDeadline+killedSlack)) {
		t.Fatal("the load still runs long after the kill: a call hangs")
	}
	require.Positive(t, afterN.Load(), "no call ran after the kill: the test proved nothing")
	assert.Zero(t, afterOK.Load(), "of %d calls begun after the kill, %d returned nil", afterN.Load(), afterOK.Load())

	// Every method, each with a deadline: an error, by the deadline.
	for _, c := range killedServerCalls(db, b, m, export.Bytes()) {
		err := call(c.name, c.f)
		assert.Error(t, err, "%s returned nil from a killed server", c.name)
		assert.NotErrorIs(t, err, memory.ErrInvalidImport, "%s: the input is valid", c.name)
	}
	var swept []string
	for _, v := range []any{m, m.ForTenant("acme"), b} {
		sweepMethods(t, v, func(name string, f func(ctx context.Context) error) {
			swept = append(swept, name)
			assert.Error(t, call(name, f), "%s returned nil from a killed server", name)
		})
	}
	require.GreaterOrEqual(t, len(swept), 20, "methods swept: %v", swept)
	t.Logf("swept %d methods: %v", len(swept), swept)

	start := time.Now()
	require.NoError(t, callNoPanic(t, "memory Close", m.Close))
	closeErr := callNoPanic(t, "DB Close", db.Close)
	if d := time.Since(start); d > killedDeadline+killedSlack {
		t.Errorf("Close took %v with the server dead", d)
	}
	t.Logf("Close: %v", closeErr)

	// Restarted, the server holds every acknowledged turn, and nothing
	// that was not attempted.
	pg.start(t)
	check := openDB(t, pg.url())
	total := 0
	for w := range savers {
		session := fmt.Sprintf("killed-%d", w)
		win, err := memoryOn(t, check, memory.WithCacheTTL(0), memory.WithMaxTurns(1<<20)).LoadContext(ctx, session)
		require.NoError(t, err)
		stored := make([]string, len(win.Turns))
		for i, turn := range win.Turns {
			stored[i] = turn.ID
			checkWindow(t, session, win)
		}
		for _, id := range acked[w] {
			if !slices.Contains(stored, id) {
				t.Errorf("session %q: acknowledged turn %q lost", session, id)
			}
		}
		for _, id := range stored {
			if !slices.Contains(acked[w], id) && !slices.Contains(failed[w], id) {
				t.Errorf("session %q: turn %q stored but never saved", session, id)
			}
		}
		assert.Equal(t, len(stored), win.TurnCount, "session %q: TurnCount", session)
		total += len(acked[w])
	}
	t.Logf("%d saves acknowledged before the kill; %d calls after it, all failed", total, afterN.Load())
}

// A killedCall is one call of the public API against the killed server.
type killedCall struct {
	name string
	f    func(ctx context.Context) error
}

// killedServerCalls returns calls, with valid arguments, of the memory and
// of the DB under it: each must reach the server, and fail. export is what
// Export wrote, for Import.
func killedServerCalls(db *dataflow.DB, b *backend.DataFlowBackend, m *memory.PersistentBufferMemory, export []byte) []killedCall {
	errOf := func(_ any, err error) error { return err }
	return []killedCall{
		{"memory SaveTurn", func(ctx context.Context) error { return m.SaveTurn(ctx, "killed-0", idTurn("late")) }},
		{"memory AppendMessages", func(ctx context.Context) error {
			return m.AppendMessages(ctx, "killed-0", "t00000", memory.Message{Role: memory.RoleUser, Content: "late"})
		}},
		{"memory LoadContext", func(ctx context.Context) error { return errOf(m.LoadContext(ctx, "killed-0")) }},
		{"memory Clear", func(ctx context.Context) error { return m.Clear(ctx, "killed-1") }},
		{"memory ReplaceSession", func(ctx context.Context) error { return m.ReplaceSession(ctx, "killed-2", idTurn("n1")) }},
		{"memory CreateSession", func(ctx context.Context) error {
			return m.CreateSession(ctx, memory.SessionInfo{ID: "new", User: "u"})
		}},
		{"memory SessionInfo", func(ctx context.Context) error { return errOf(m.SessionInfo(ctx, "killed-0")) }},
		{"memory ListSessions", func(ctx context.Context) error { return errOf(m.ListSessions(ctx, memory.SessionQuery{})) }},
		{"memory History", func(ctx context.Context) error {
			return errOf(m.History(ctx, "killed-0", memory.HistoryQuery{}))
		}},
		{"memory Search", func(ctx context.Context) error {
			return errOf(m.Search(ctx, memory.SearchQuery{Text: "u"}))
		}},
		{"memory DeleteUser", func(ctx context.Context) error { return errOf(m.DeleteUser(ctx, "u")) }},
		{"memory Expire", func(ctx context.Context) error { return errOf(m.Expire(ctx, time.Now())) }},
		{"memory Export", func(ctx context.Context) error { return m.Export(ctx, "killed-0", io.Discard) }},
		{"memory Import", func(ctx context.Context) error { return errOf(m.Import(ctx, bytes.NewReader(export))) }},
		{"backend EnsureSearchIndex", b.EnsureSearchIndex},
		{"backend TenantCounts", func(ctx context.Context) error { return errOf(b.TenantCounts(ctx)) }},
		{"backend DatabaseSize", func(ctx context.Context) error { return errOf(b.DatabaseSize(ctx)) }},
		{"DB RunInTx", func(ctx context.Context) error {
			return db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				_, err := tx.ExecContext(ctx, "SELECT 1")
				return err
			})
		}},
		{"DB ExecContext", func(ctx context.Context) error { return errOf(db.ExecContext(ctx, "SELECT 1")) }},
		{"DB QueryContext", func(ctx context.Context) error { return queryErr(db.QueryContext(ctx, "SELECT 1")) }},
		{"DB QueryRetry", func(ctx context.Context) error { return queryErr(db.QueryRetry(ctx, "SELECT 1")) }},
		{"DB Stmt Exec", func(ctx context.Context) error { return errOf(db.NewStmt("SELECT 1").Exec(ctx)) }},
		{"DB Stmt Query", func(ctx context.Context) error { return queryErr(db.NewReadStmt("SELECT 1").Query(ctx)) }},
	}
}

// queryErr closes rows and returns err, or the error of reading them.
func queryErr(rows *sql.Rows, err error) error {
	if err != nil {
		return err
	}
	for rows.Next() {
	}
	return errors.Join(rows.Err(), rows.Close())
}

// sweepMethods calls check with every exported method of v whose first
// parameter is a context, with plausible arguments made up from the
// parameter types, so that a method added later is called too.
func sweepMethods(t *testing.T, v any, check func(name string, f func(ctx context.Context) error)) {
	t.Helper()
	ctxType := reflect.TypeFor[context.Context]()
	errType := reflect.TypeFor[error]()
	rv := reflect.ValueOf(v)
	typeName := rv.Type().Elem().Name()
	for i := range rv.NumMethod() {
		mt := rv.Type().Method(i)
		ft := mt.Func.Type() // receiver first
		if ft.NumIn() < 2 || ft.In(1) != ctxType || ft.NumOut() == 0 || ft.Out(ft.NumOut()-1) != errType {
			continue
		}
		if mt.Name == "ExpireEvery" {
			continue // runs until its context ends, returning ctx's error by design
		}
		method := rv.Method(i)
		check(typeName+"."+mt.Name, func(ctx context.Context) error {
			mft := method.Type()
			args := []reflect.Value{reflect.ValueOf(ctx)}
			n := mft.NumIn()
			if mft.IsVariadic() {
				n-- // none
			}
			for j := 1; j < n; j++ {
				args = append(args, sweepArg(mft.In(j)))
			}
			out := method.Call(args)
			err, _ := out[len(out)-1].Interface().(error)
			return err
		})
	}
}

// sweepArg makes a plausible argument of type typ: a session ID for a
// string, a whole turn for a Turn, a query with a word, a time, a small
// positive number.
func sweepArg(typ reflect.Type) reflect.Value {
	switch typ {
	case reflect.TypeFor[memory.Turn]():
		return reflect.ValueOf(idTurn("sweep"))
	case reflect.TypeFor[memory.SearchQuery]():
		return reflect.ValueOf(memory.SearchQuery{Text: "u"})
	case reflect.TypeFor[time.Time]():
		return reflect.ValueOf(time.Now())
	case reflect.TypeFor[time.Duration]():
		return reflect.ValueOf(time.Hour)
	case reflect.TypeFor[io.Reader]():
		return reflect.ValueOf(io.Reader(strings.NewReader(`{"session":{"id":"swept"}}` + "\n")))
	case reflect.TypeFor[io.Writer]():
		return reflect.ValueOf(io.Writer(io.Discard))
	}
	switch typ.Kind() {
	case reflect.String:
		return reflect.ValueOf("killed-0").Convert(typ)
	case reflect.Int, reflect.Int64:
		return reflect.ValueOf(int64(10)).Convert(typ)
	case reflect.Pointer:
		p := reflect.New(typ.Elem())
		if typ.Elem().Kind() == reflect.String {
			p.Elem().SetString("u")
		}
		return p
	}
	return reflect.Zero(typ)
}

// A privatePG is a PostgreSQL server the test started, on a loopback port
// and a data directory of its own.
type privatePG struct {
	bin  string // directory of initdb and postgres
	data string
	port int
	cred *syscall.Credential // the user it runs as when the test is root

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait returned
	log    *lockedBuffer
}

// startPrivatePG initialises a data directory with initdb and starts
// postgres on it; it is killed at cleanup. As root it runs both as the
// postgres user (or nobody), since initdb refuses root.
func startPrivatePG(t *testing.T) *privatePG {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	slices.SortFunc(bins, func(a, b string) int { return pgMajor(b) - pgMajor(a) })
	if len(bins) == 0 {
		if os.Getenv(envRequirePrivatePG) != "" {
			t.Fatalf("%s is set but there is no /usr/lib/postgresql/*/bin/postgres", envRequirePrivatePG)
		}
		t.Skipf("private PostgreSQL tests skipped: no /usr/lib/postgresql/*/bin/postgres (apt-get install postgresql); set %s=1 to fail instead", envRequirePrivatePG)
	}
	p := &privatePG{bin: filepath.Dir(bins[0])}
	dir := t.TempDir()
	p.data = filepath.Join(dir, "data")
	require.NoError(t, os.Mkdir(p.data, 0o700))
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		require.NoError(t, err, "a user to run PostgreSQL as, not root")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		require.NoError(t, os.Chown(p.data, uid, gid))
		// t.TempDir's directories are root's, mode 0700: let the user
		// through to its data directory.
		for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			require.NoError(t, os.Chmod(d, 0o711))
		}
	}
	initdb := p.command(filepath.Join(p.bin, "initdb"), "-D", p.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--no-locale")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	t.Cleanup(func() { p.kill(t) })
	p.start(t)
	return p
}

// pgMajor is the major version in a /usr/lib/postgresql/N/bin path.
func pgMajor(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// command is name with args, run as p's user, in a process group of its
// own so that kill reaches the backends too.
func (p *privatePG) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	return cmd
}

// start starts postgres on p's data directory (again, after kill) and
// waits until it takes connections, on a free port the first time.
func (p *privatePG) start(t *testing.T) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		if p.port == 0 || attempt > 1 {
			p.port = freeLoopbackPort(t)
		}
		err := p.startOnce()
		if err == nil {
			return
		}
		if attempt == 5 {
			t.Fatalf("start postgres: %v", err)
		}
		t.Logf("start postgres (attempt %d): %v", attempt, err)
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *privatePG) startOnce() error {
	p.log = new(lockedBuffer)
	p.exited = make(chan struct{})
	p.cmd = p.command(filepath.Join(p.bin, "postgres"), "-D", p.data, "-p", strconv.Itoa(p.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "max_connections=40", "-c", "shared_buffers=16MB")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return err
	}
	exited := p.exited
	go func() { _ = p.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("postgres exited at start: %s", strings.TrimSpace(p.log.String()))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		db, err := sql.Open("pgx", p.url())
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			p.killGroup()
			return fmt.Errorf("postgres takes no connection on port %d after 30 s: %v: %s", p.port, err, strings.TrimSpace(p.log.String()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// url is the URL of p's postgres database.
func (p *privatePG) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// kill SIGKILLs the server and its backends (its process group) and waits
// for the postmaster to be gone. It does nothing if the server is not
// running.
func (p *privatePG) kill(t *testing.T) {
	t.Helper()
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	p.killGroup()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("postgres (pid %d) still running 10 s after SIGKILL", p.cmd.Process.Pid)
	}
}

// killGroup sends SIGKILL to the process group of the postmaster, which
// the test started (Setpgid): the postmaster and its backends.
func (p *privatePG) killGroup() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// freeLoopbackPort returns a TCP port of 127.0.0.1 that was free a moment
// ago, never 5432.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err, "find a free port")
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port != 5432 {
			return port
		}
	}
}
