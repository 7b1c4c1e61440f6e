package tests

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"go/build"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// This file holds the concurrent-process tests and the helpers every
// reliability test shares: building and driving the saver program
// (tests/internal/saver), and reading a store back with the driver alone to
// check its invariants.

// TestConcurrentFirstUse starts 8 saver processes on one fresh database at
// the same moment, so that all of them open it and race to create the
// tables: every process must succeed, every turn must be stored, and the
// migration history must record exactly one migration per table, and the
// data upgrade (found with nothing to do) done once.
func TestConcurrentFirstUse(t *testing.T) {
	const procs, turns = 8, 20
	// Several rounds: a race at first open shows in only some of them.
	rounds := 8
	if testing.Short() {
		rounds = 2
	}
	bin := saverBinary(t)
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		for round := range rounds {
			url := d.URL(t) // a fresh database each round
			args := make([][]string, procs)
			for i := range args {
				p := fmt.Sprintf("r%dp%d-", round, i)
				args[i] = []string{"-db", url, "-session", "session-" + p, "-prefix", p, "-n", strconv.Itoa(turns)}
			}
			res := runSavers(t, bin, args)
			acked := 0
			for i, r := range res {
				if !r.ok() || len(r.acks) != turns {
					t.Errorf("round %d: saver %d: %d acks, want %d; %s", round, i, len(r.acks), turns, r)
				}
				acked += len(r.acks)
			}
			s := readStore(t, url)
			for i, r := range res {
				s.requireTurns(t, fmt.Sprintf("session-r%dp%d-", round, i), r.acks)
			}
			if got := s.totalTurns(); got != procs*turns {
				t.Errorf("round %d: %d turns stored; want %d", round, got, procs*turns)
			}
			want := map[string]int{backend.SessionsTable: 1, backend.MessagesTable: 1, backend.ErasedTable: 1, "upgrade:" + backend.CountedUpgrade: 1, "upgrade:" + backend.HeadlessUpgrade: 1}
			if !maps.Equal(s.history, want) {
				t.Errorf("round %d: migration history rows per table = %v; want %v", round, s.history, want)
			}
			t.Logf("round %d: %d processes, %d turns acknowledged, %d stored, history %v", round, procs, acked, s.totalTurns(), s.history)
		}
	})
}

// TestConcurrentWriterProcesses runs 4 processes × 200 turns into one
// database, all into one shared session and then each into its own: no
// error, no "database is locked", every turn stored, exact turn counts and
// sequences without gaps.
func TestConcurrentWriterProcesses(t *testing.T) {
	const procs, turns = 4, 200
	bin := saverBinary(t)
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		for _, shared := range []bool{true, false} {
			name := "distinct-sessions"
			if shared {
				name = "shared-session"
			}
			t.Run(name, func(t *testing.T) {
				url := d.URL(t)
				args := make([][]string, procs)
				for i := range args {
					p := fmt.Sprintf("w%d-", i)
					session, mode := "session-"+p, "saveload" // reads in between, on sessions nobody else writes
					if shared {
						session, mode = "shared", "save"
					}
					args[i] = []string{"-db", url, "-session", session, "-prefix", p, "-n", strconv.Itoa(turns), "-mode", mode}
				}
				start := time.Now()
				res := runSavers(t, bin, args)
				elapsed := time.Since(start)
				var acks []string
				for i, r := range res {
					if !r.ok() || len(r.acks) != turns {
						t.Errorf("saver %d: %d acks, want %d; %s", i, len(r.acks), turns, r)
					}
					for _, line := range append(slices.Clone(r.lines), strings.Split(r.stderr, "\n")...) {
						if l := strings.ToLower(line); strings.Contains(l, "database is locked") || strings.Contains(l, "sqlite_busy") {
							t.Errorf("saver %d: %q", i, line)
						}
					}
					acks = append(acks, r.acks...)
				}
				s := readStore(t, url)
				if shared {
					s.requireTurns(t, "shared", acks)
					if got := s.counts["shared"]; got != procs*turns {
						t.Errorf("turn_count of the shared session = %d; want %d", got, procs*turns)
					}
					// How often the writer changes along seq shows how much the
					// processes really overlapped.
					writer := make([]string, procs*turns+1)
					for id, seq := range s.turns["shared"] {
						if seq < int64(len(writer)) {
							writer[seq], _, _ = strings.Cut(id, "-")
						}
					}
					switches := 0
					for seq := 2; seq < len(writer); seq++ {
						if writer[seq] != writer[seq-1] {
							switches++
						}
					}
					t.Logf("the writer changes %d times along the %d seqs of the shared session", switches, procs*turns)
				} else {
					for i, r := range res {
						s.requireTurns(t, fmt.Sprintf("session-w%d-", i), r.acks)
					}
				}
				if got := s.totalTurns(); got != procs*turns {
					t.Errorf("%d turns stored; want %d", got, procs*turns)
				}
				t.Logf("%d processes × %d turns in %v: %d acknowledged, %d stored in %d sessions",
					procs, turns, elapsed.Round(time.Millisecond), len(acks), s.totalTurns(), len(s.turns))
			})
		}
	})
}

// idTurn is the turn the saver program saves for id: every stored message
// can be recomputed from its turn ID.
func idTurn(id string) memory.Turn {
	return memory.Turn{ID: id, User: "u:" + id, Agent: "a:" + id}
}

// saverTimeout bounds one saver process; a saver still running then is
// killed and its test fails.
const saverTimeout = 90 * time.Second

var saverBuild struct {
	once sync.Once
	path string
	err  error
}

// saverBinary builds tests/internal/saver once per test binary and returns
// its path. It is built without -race even under go test -race: the race
// detector makes modernc.org/sqlite about ten times slower, and what races
// matters here is between processes, which the detector cannot see.
func saverBinary(t testing.TB) string {
	t.Helper()
	saverBuild.once.Do(func() { saverBuild.path, saverBuild.err = buildSaver() })
	if saverBuild.err != nil {
		t.Fatalf("build the saver program: %v", saverBuild.err)
	}
	return saverBuild.path
}

const saverDirPrefix = "turnkeep-saver-"

func buildSaver() (string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(build.Default.GOROOT, "bin", "go")
	}
	sweepSaverDirs()
	// The directory outlives the test binary (there is no hook at its end
	// short of a TestMain, which this package leaves free); its name holds
	// our pid so that a later run removes it.
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", saverDirPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "saver")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "build", "-o", bin, "./internal/saver")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("%s build: %w\n%s", goCmd, err, out)
	}
	return bin, nil
}

// sweepSaverDirs removes saver directories left by test binaries that no
// longer run.
func sweepSaverDirs() {
	entries, _ := os.ReadDir(os.TempDir())
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), saverDirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
		}
	}
}

// A saverProc is a running saver program.
type saverProc struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stdin  io.WriteCloser // nil unless started with -wait
	stderr bytes.Buffer   // written by exec's copier; read after Wait
	ready  chan struct{}  // closed when the saver printed "ready"
	eof    chan struct{}  // closed when stdout ended

	mu      sync.Mutex // protects lines and partial
	lines   []string   // complete stdout lines
	partial string     // an unterminated last line, if any
}

// startSaver starts the saver with args. With wait, it adds -wait and
// gives the saver a stdin to be released through.
func startSaver(t testing.TB, bin string, wait bool, args ...string) *saverProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), saverTimeout)
	if wait {
		args = append([]string{"-wait"}, args...)
	}
	p := &saverProc{
		cmd:    exec.CommandContext(ctx, bin, args...),
		cancel: cancel,
		ready:  make(chan struct{}),
		eof:    make(chan struct{}),
	}
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if wait {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start saver: %v", err)
	}
	go p.read(stdout)
	return p
}

func (p *saverProc) read(stdout io.Reader) {
	defer close(p.eof)
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			p.mu.Lock()
			p.partial = line // a line cut by a kill is not an acknowledgement
			p.mu.Unlock()
			return
		}
		line = strings.TrimSuffix(line, "\n")
		p.mu.Lock()
		p.lines = append(p.lines, line)
		p.mu.Unlock()
		if line == "ready" {
			close(p.ready)
		}
	}
}

// release lets a saver started with wait open the database.
func (p *saverProc) release() error {
	_, err := io.WriteString(p.stdin, "go\n")
	return err
}

// kill sends SIGKILL.
func (p *saverProc) kill() { _ = p.cmd.Process.Signal(syscall.SIGKILL) }

// wait waits for the saver to end and returns what it did.
func (p *saverProc) wait() saverResult {
	<-p.eof // bounded: the process is killed at saverTimeout
	err := p.cmd.Wait()
	p.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := saverResult{lines: p.lines, partial: p.partial, stderr: p.stderr.String(), err: err}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r.killed = ws.Signal() == syscall.SIGKILL
	}
	for _, line := range p.lines {
		switch {
		case strings.HasPrefix(line, "ack "):
			r.acks = append(r.acks, strings.TrimPrefix(line, "ack "))
		case strings.HasPrefix(line, "error "):
			r.errors = append(r.errors, line)
		case strings.HasPrefix(line, "done "):
			r.done = true
		}
	}
	return r
}

// saverResult is what a saver printed and how it ended.
type saverResult struct {
	lines   []string
	acks    []string // turn IDs acknowledged, in order
	errors  []string // "error …" lines
	done    bool     // printed "done": it finished its loop
	partial string
	stderr  string
	err     error // from Wait
	killed  bool  // ended by SIGKILL
}

// ok reports a saver that finished its loop and exited 0.
func (r saverResult) ok() bool { return r.err == nil && r.done && len(r.errors) == 0 }

func (r saverResult) String() string {
	last := r.lines
	if len(last) > 3 {
		last = last[len(last)-3:]
	}
	return fmt.Sprintf("exit %v, done %v, errors %q, last lines %q, stderr %q", r.err, r.done, r.errors, last, r.stderr)
}

// runSavers starts one saver per argument list, each waiting on its stdin,
// waits until all are ready, releases them together and waits for all.
func runSavers(t *testing.T, bin string, args [][]string) []saverResult {
	t.Helper()
	procs := make([]*saverProc, len(args))
	for i, a := range args {
		procs[i] = startSaver(t, bin, true, a...)
	}
	deadline := time.After(30 * time.Second)
	for i, p := range procs {
		select {
		case <-p.ready:
		case <-p.eof:
			t.Errorf("saver %d ended before it was ready", i)
		case <-deadline:
			t.Errorf("saver %d not ready after 30s", i)
		}
	}
	for i, p := range procs {
		if err := p.release(); err != nil {
			t.Errorf("release saver %d: %v", i, err)
		}
	}
	res := make([]saverResult, len(procs))
	for i, p := range procs {
		res[i] = p.wait()
	}
	return res
}

// openChecker opens the database at url with the driver alone, not
// through the library, for reading a store back. rowLocks reports an
// engine that locks rows (PostgreSQL, MySQL), not the database (SQLite).
func openChecker(t testing.TB, url string) (db *sql.DB, rowLocks bool) {
	t.Helper()
	var err error
	if path, ok := strings.CutPrefix(url, "sqlite:///"); ok {
		db, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	} else if strings.HasPrefix(url, "mysql://") {
		var dsn string
		if dsn, err = dbtest.MySQLDSN(url); err == nil {
			db, err = sql.Open("mysql", dsn)
		}
		rowLocks = true
	} else {
		db, err = sql.Open("pgx", url)
		rowLocks = true
	}
	if err != nil {
		t.Fatalf("open checker: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, rowLocks
}

// A storeView is what the tables of a DataFlowBackend hold.
type storeView struct {
	turns    map[string]map[string]int64 // session → turn ID → seq
	counts   map[string]int64            // session → turn_count of its row
	messages int
	history  map[string]int // table → rows in the migration history
}

func (s storeView) totalTurns() int {
	n := 0
	for _, ts := range s.turns {
		n += len(ts)
	}
	return n
}

// requireTurns fails the test for every id the session does not hold.
// (readStore has already checked that each stored turn is there once.)
func (s storeView) requireTurns(t testing.TB, session string, ids []string) {
	t.Helper()
	missing := 0
	for _, id := range ids {
		if _, ok := s.turns[session][id]; !ok {
			if missing++; missing <= 10 {
				t.Errorf("acknowledged turn %q of session %q is not stored", id, session)
			}
		}
	}
	if missing > 10 {
		t.Errorf("… %d acknowledged turns missing in all", missing)
	}
}

// readStore reads every message and session row at url with the driver
// alone and fails the test for each broken invariant:
//
//   - every turn ID of a session has exactly two messages, pos 0 role user
//     and pos 1 role assistant, with the same seq and the contents idTurn
//     gives (so no half turn and no duplicate);
//   - the seqs of a session's turns are 1..n without gap or repeat;
//   - the session row's turn_count is n, and no session row is left
//     without messages.
//
// On the MySQL family it first waits for the statements other connections
// still run (waitMySQLIdle), so that its reads see one outcome of each.
func readStore(t testing.TB, url string) storeView {
	t.Helper()
	if strings.HasPrefix(url, "mysql://") {
		waitMySQLIdle(t, url)
	}
	db, _ := openChecker(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	problems := 0
	report := func(format string, args ...any) {
		t.Helper()
		if problems++; problems <= 20 {
			t.Errorf(format, args...)
		}
	}
	defer func() {
		if problems > 20 {
			t.Errorf("… %d store problems in all", problems)
		}
	}()

	type msg struct {
		seq           int64
		pos           int64
		role, content string
	}
	type key struct{ session, turn string }
	byTurn := map[key][]msg{}
	s := storeView{turns: map[string]map[string]int64{}, counts: map[string]int64{}}

	rows, err := db.QueryContext(ctx, `SELECT session_id, seq, pos, turn_id, role, content FROM `+backend.MessagesTable)
	if err != nil {
		t.Fatalf("read messages: %v", err)
	}
	for rows.Next() {
		var k key
		var m msg
		if err := rows.Scan(&k.session, &m.seq, &m.pos, &k.turn, &m.role, &m.content); err != nil {
			t.Fatalf("read messages: %v", err)
		}
		byTurn[k] = append(byTurn[k], m)
		s.messages++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read messages: %v", err)
	}
	rows.Close()

	seqs := map[string]map[int64]string{} // session → seq → turn ID
	for k, ms := range byTurn {
		slices.SortFunc(ms, func(a, b msg) int { return int(a.pos - b.pos) })
		want := idTurn(k.turn)
		if len(ms) != 2 || ms[0].pos != 0 || ms[1].pos != 1 || ms[0].seq != ms[1].seq ||
			ms[0].role != string(memory.RoleUser) || ms[1].role != string(memory.RoleAssistant) ||
			ms[0].content != want.User || ms[1].content != want.Agent {
			report("session %q, turn %q: messages %+v; want one user and one assistant message with the same seq", k.session, k.turn, ms)
			continue
		}
		if seqs[k.session] == nil {
			seqs[k.session] = map[int64]string{}
			s.turns[k.session] = map[string]int64{}
		}
		if other, dup := seqs[k.session][ms[0].seq]; dup {
			report("session %q: seq %d holds turns %q and %q", k.session, ms[0].seq, other, k.turn)
		}
		seqs[k.session][ms[0].seq] = k.turn
		s.turns[k.session][k.turn] = ms[0].seq
	}
	for session, bySeq := range seqs {
		for seq := int64(1); seq <= int64(len(bySeq)); seq++ {
			if _, ok := bySeq[seq]; !ok {
				report("session %q: %d turns but no seq %d (gap)", session, len(bySeq), seq)
				break
			}
		}
	}

	rows, err = db.QueryContext(ctx, `SELECT id, turn_count FROM `+backend.SessionsTable)
	if err != nil {
		t.Fatalf("read sessions: %v", err)
	}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatalf("read sessions: %v", err)
		}
		s.counts[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read sessions: %v", err)
	}
	rows.Close()
	for session, n := range s.counts {
		if got := int64(len(s.turns[session])); n != got {
			report("session %q: turn_count %d; %d turns stored", session, n, got)
		}
	}
	for session, ts := range s.turns {
		if _, ok := s.counts[session]; !ok {
			report("session %q: %d turns stored but no session row", session, len(ts))
		}
	}

	// The history table exists once anything was migrated.
	rows, err = db.QueryContext(ctx, `SELECT table_name, count(*) FROM turnkeep_migrations GROUP BY table_name`)
	if err == nil {
		s.history = map[string]int{}
		for rows.Next() {
			var table string
			var n int
			if err := rows.Scan(&table, &n); err != nil {
				t.Fatalf("read migration history: %v", err)
			}
			s.history[table] = n
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("read migration history: %v", err)
		}
		rows.Close()
	}
	return s
}
