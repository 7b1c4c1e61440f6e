package tests

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
	"github.com/turnkeep/turnkeep/memory"
)

// This file runs the application on a three-node Galera cluster on
// loopback, started once by the test and shared by its subtests (each
// uses a database of its own): first use from three servers on three
// nodes, two servers on two nodes answering one session in turn,
// concurrent writers on every node to one session, what a save costs on a
// node beside a single MariaDB, and a node SIGKILLed under write load.
// It runs with TURNKEEP_GALERA=1 (.ci/run sets it); the node-loss test
// kills every node in turn with TURNKEEP_GALERA_FULL=1 as well.

// envGaleraFull names the variable that makes the node-loss test kill
// each of the three nodes in turn, not one.
const envGaleraFull = "TURNKEEP_GALERA_FULL"

func TestGaleraCluster(t *testing.T) {
	g := dbtest.NewGalera(t, 3)
	t.Logf("cluster start: 3 nodes Synced in %s", g.Synced.Round(time.Millisecond))
	c := &galeraCluster{g: g}
	t.Run("first use from three nodes", c.testFirstUse)
	t.Run("two servers on two nodes", c.testTwoServers)
	t.Run("concurrent writers", c.testConcurrentWriters)
	t.Run("save cost", c.testSaveCost)
	t.Run("node loss", c.testNodeLoss)
}

type galeraCluster struct {
	g  *dbtest.Galera
	db atomic.Int64 // databases made
}

// database creates a database of its own for t on the cluster and waits
// until every running node has it (DDL is replicated in total order, but
// a connection names its database before any statement could wait).
func (c *galeraCluster) database(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("tk_galera_%d", c.db.Add(1))
	admin := c.admin(t, 0)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	for i := range c.g.Nodes {
		for {
			var got string
			err := c.admin(t, i).QueryRowContext(ctx, "SHOW DATABASES LIKE '"+name+"'").Scan(&got)
			if err == nil {
				break
			}
			if !errors.Is(err, sql.ErrNoRows) || ctx.Err() != nil {
				t.Fatalf("node %d: database %s: %v", i+1, name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return name
}

// admin returns a pool on node i as root, without a database, closed at
// t's cleanup.
func (c *galeraCluster) admin(t *testing.T, i int) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", c.g.Nodes[i].DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// server is an application server on node i: a PersistentBufferMemory
// with its cache, over a backend of its own on a pool to that node.
type galeraServer struct {
	m *memory.PersistentBufferMemory
	b *backend.DataFlowBackend
}

func (c *galeraCluster) server(t *testing.T, i int, dbname string, opts ...memory.Option) galeraServer {
	t.Helper()
	db := openDB(t, c.g.Nodes[i].URL(dbname))
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		t.Fatal(err)
	}
	m, err := memory.NewPersistentBufferMemory(b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return galeraServer{m: m, b: b}
}

// wsrepStatus sums the named status counters over the running nodes.
func (c *galeraCluster) wsrepStatus(t *testing.T, names ...string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]int64{}
	for i, n := range c.g.Nodes {
		if n.PID() == 0 {
			continue
		}
		admin := c.admin(t, i)
		for _, name := range names {
			var k string
			var v int64
			if err := admin.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&k, &v); err != nil {
				t.Fatalf("node %d: %s: %v", i+1, name, err)
			}
			out[name] += v
		}
	}
	return out
}

// First use from three servers on three nodes at once: each table is
// migrated once (one row each in the migration history), and no statement
// any server sent uses GET_LOCK or LOCK TABLES, which Galera lacks: the
// servers' general logs hold the lease's statements instead.
func (c *galeraCluster) testFirstUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbname := c.database(t)
	logs := make([]string, len(c.g.Nodes))
	for i, n := range c.g.Nodes {
		logs[i] = filepath.Join(n.Dir, "general.log")
		admin := c.admin(t, i)
		for _, q := range []string{"SET GLOBAL general_log_file = '" + logs[i] + "'", "SET GLOBAL general_log = 1"} {
			if _, err := admin.ExecContext(ctx, q); err != nil {
				t.Fatalf("node %d: %s: %v", i+1, q, err)
			}
		}
		t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "SET GLOBAL general_log = 0") })
	}

	servers := make([]galeraServer, 3)
	for i := range servers {
		servers[i] = c.server(t, i, dbname)
	}
	start := make(chan struct{})
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() {
			<-start
			errs[i] = s.m.SaveTurn(ctx, fmt.Sprintf("first-%d", i), memory.Turn{ID: fmt.Sprintf("t%d", i), User: "hello", Agent: "hi"})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("server on node %d: first save: %v", i+1, err)
		}
	}
	for i := range c.g.Nodes {
		if _, err := c.admin(t, i).ExecContext(ctx, "SET GLOBAL general_log = 0"); err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}

	// Every server sees every first turn, whichever node took it.
	for _, s := range servers {
		for j := range servers {
			wantWindow(t, s.m, fmt.Sprintf("first-%d", j), 1, fmt.Sprintf("t%d", j))
		}
	}

	rows, err := c.admin(t, 0).QueryContext(ctx, "SELECT table_name, COUNT(*) FROM "+dbname+".turnkeep_migrations GROUP BY table_name ORDER BY table_name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
		if n != 1 {
			t.Errorf("table %s: %d migrations recorded by three servers on three nodes; want 1", name, n)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tables, backend.SessionsTable) || !slices.Contains(tables, backend.MessagesTable) {
		t.Errorf("migration history holds %v; want %s and %s among them", tables, backend.SessionsTable, backend.MessagesTable)
	}
	var applied uint64
	for _, s := range servers {
		applied += s.b.EngineStats()["migrations_applied"]
	}
	migrated := 0 // tables; the other rows record one-time data upgrades
	for _, name := range tables {
		if !strings.HasPrefix(name, "upgrade:") {
			migrated++
		}
	}
	if applied != uint64(migrated) {
		t.Errorf("the three servers applied %d migrations for %d tables; want one each", applied, migrated)
	}

	var leaseStatements int
	for i, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("node %d: general log: %v", i+1, err)
		}
		text := strings.ToLower(string(b))
		for _, bad := range []string{"get_lock", "lock tables", "lock table "} {
			if strings.Contains(text, bad) {
				t.Errorf("node %d: a server sent %q, which Galera does not support", i+1, bad)
			}
		}
		leaseStatements += strings.Count(text, sqlcore.LockTable)
	}
	if leaseStatements == 0 {
		t.Errorf("no statement on %s in the general logs: the check of the lock primitive saw nothing", sqlcore.LockTable)
	}
	t.Logf("first use: tables %v migrated once each (%d migrations applied by three servers); %d lease statements, no GET_LOCK or LOCK TABLES", tables, applied, leaseStatements)
}

// Two app servers (turnkeep.Open, default options: the coherent cache and
// causal reads) on nodes 1 and 2 answer one session in turn: after each
// request on one server, the other loads the session at once. Every
// window must be the truth (read-your-writes across nodes). A control run
// with WithStaleReads(1h) must be caught by the same check; a run with
// causal reads turned off (wsrep_sync_wait=0) is reported, not judged.
func (c *galeraCluster) testTwoServers(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	dbname := c.database(t)
	run := func(t *testing.T, session, query string, opts ...memory.Option) (loads, wrong, retried int, stats [2]memory.CacheStats) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var servers [2]*memory.PersistentBufferMemory
		for i := range servers {
			m, err := turnkeep.Open(ctx, c.g.Nodes[i].URL(dbname)+query, turnkeep.Memory(opts...))
			if err != nil {
				t.Fatalf("Open on node %d: %v", i+1, err)
			}
			t.Cleanup(func() { m.Close() })
			servers[i] = m
		}
		const steps = 300
		rng := rand.New(rand.NewPCG(seed, 7))
		model := newCoherenceModel(memory.DefaultMaxTurns)
		check := func(x, step int) {
			w, err := servers[x].LoadContext(ctx, session)
			if err != nil {
				t.Fatalf("step %d: load on node %d: %v", step, x+1, err)
			}
			loads++
			got := windowState{count: w.TurnCount}
			for _, turn := range w.Turns {
				got.ids = append(got.ids, turn.ID)
			}
			if want := model.state(session); !got.equal(want) {
				if wrong == 0 {
					t.Logf("%s: first wrong window at step %d, node %d: got %s; want %s", session, step, x+1, got, want)
				}
				wrong++
			}
		}
		// write retries a write that lost a conflict (1213), as an app
		// would: it was rolled back whole.
		write := func(step, x int, what string, f func() error) {
			for try := 1; ; try++ {
				err := f()
				if err == nil {
					return
				}
				if !dataflow.Retryable(err) || try == 5 {
					t.Fatalf("step %d: %s on node %d: %v", step, what, x+1, err)
				}
				retried++
			}
		}
		for step := range steps {
			x := step % 2
			switch op := rng.IntN(100); {
			case op < 4:
				write(step, x, "clear", func() error { return servers[x].Clear(ctx, session) })
				model.clear(session)
			case op < 60:
				id := fmt.Sprintf("t%04d", step)
				write(step, x, "save", func() error {
					return servers[x].SaveTurn(ctx, session, memory.Turn{ID: id, User: "question " + id, Agent: "answer " + id})
				})
				model.save(session, id)
			default:
				check(x, step)
			}
			check(1-x, step) // the other node, at once
		}
		return loads, wrong, retried, [2]memory.CacheStats{servers[0].Stats(), servers[1].Stats()}
	}

	loads, wrong, retried, stats := run(t, "alternating", "")
	t.Logf("default options: %d loads on two nodes, %d wrong windows, %d writes retried after a conflict; caches %+v, %+v", loads, wrong, retried, stats[0], stats[1])
	if wrong > 0 {
		t.Errorf("%d of %d loads returned a stale or wrong window across nodes; want 0", wrong, loads)
	}
	if stats[0].Hits+stats[1].Hits == 0 || stats[0].Stale+stats[1].Stale == 0 {
		t.Errorf("caches %+v, %+v: no hit or no stale window caught, the run proved nothing", stats[0], stats[1])
	}

	loads, wrong, _, _ = run(t, "control", "", memory.WithStaleReads(time.Hour))
	if wrong == 0 {
		t.Errorf("with WithStaleReads(1h) no wrong window was detected in %d loads: the check cannot fail", loads)
	}
	t.Logf("control, WithStaleReads(1h): %d wrong windows in %d loads, as it should", wrong, loads)
	loads, wrong, retried, _ = run(t, "no-causal-reads", "?wsrep_sync_wait=0")
	t.Logf("causal reads off (wsrep_sync_wait=0): %d wrong windows in %d loads, %d writes retried after a conflict (not judged)", wrong, loads, retried)
}

// Writers on all three nodes save turns to one session at once. Each
// save's session-row write conflicts with the others' in certification
// (error 1213), which the store retries with the same turn ID; a caller
// that still gets a retryable error (or an unknown outcome) saves the
// same turn again. Afterwards the session holds every acknowledged turn
// exactly once, and nothing else.
func (c *galeraCluster) testConcurrentWriters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dbname := c.database(t)
	const session, perWriter, writersPerNode = "contended", 30, 2
	servers := make([]galeraServer, len(c.g.Nodes))
	for i := range servers {
		servers[i] = c.server(t, i, dbname)
		wantWindow(t, servers[i].m, session, 0) // tables ensured, outside the count
	}
	counters := []string{"wsrep_local_cert_failures", "wsrep_local_bf_aborts"}
	before := c.wsrepStatus(t, counters...)
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		surfaced = map[string]int{} // errors the callers saw, by kind
		wg       sync.WaitGroup
	)
	start := time.Now()
	for i, s := range servers {
		for w := range writersPerNode {
			wg.Go(func() {
				for k := range perWriter {
					id := fmt.Sprintf("n%d-w%d-%03d", i+1, w, k)
					for try := 1; ; try++ {
						err := s.m.SaveTurn(ctx, session, memory.Turn{ID: id, User: "from " + id, Agent: "ok"})
						if err == nil {
							mu.Lock()
							acked[id] = true
							mu.Unlock()
							break
						}
						kind := galeraErrorKind(err)
						mu.Lock()
						surfaced[kind]++
						mu.Unlock()
						if kind == "other" || try == 20 || ctx.Err() != nil {
							t.Errorf("node %d: save %s, try %d: %v", i+1, id, try, err)
							return
						}
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := c.wsrepStatus(t, counters...)

	fresh := c.server(t, 2, dbname)
	ids := historyIDs(t, fresh.m, session)
	checkTurns(t, session, ids, acked, acked)
	info, err := fresh.m.SessionInfo(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	if info.TurnCount != len(acked) {
		t.Errorf("TurnCount %d; want %d acknowledged turns", info.TurnCount, len(acked))
	}
	c.checkRows(t, dbname, session, len(acked), 2)
	certFailures := after[counters[0]] - before[counters[0]]
	bfAborts := after[counters[1]] - before[counters[1]]
	saves := len(servers) * writersPerNode * perWriter
	t.Logf("concurrent writers: %d saves to one session from %d writers on 3 nodes in %s; the nodes counted %d certification failures and %d brute-force aborts (each a 1213 the store retried); callers saw %v",
		saves, len(servers)*writersPerNode, elapsed.Round(time.Millisecond), certFailures, bfAborts, surfaced)
	if certFailures+bfAborts == 0 {
		t.Errorf("no certification conflict in %d contended saves: the run proved nothing", saves)
	}
}

// checkRows fails t unless the session's rows on node 1 are whole: its
// turn count is turns, and its messages are perTurn per turn, numbered
// 1 to turns without a gap or a repeat (a turn whose messages were
// committed without its session row's update, or the reverse, breaks it).
func (c *galeraCluster) checkRows(t *testing.T, dbname, session string, turns, perTurn int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var count, distinct, lo, hi, msgs sql.NullInt64
	admin := c.admin(t, 0)
	if err := admin.QueryRowContext(ctx, "SELECT turn_count FROM "+dbname+"."+backend.SessionsTable+" WHERE id = ?", session).Scan(&count); err != nil {
		t.Fatalf("session row: %v", err)
	}
	if err := admin.QueryRowContext(ctx, "SELECT COUNT(DISTINCT seq), MIN(seq), MAX(seq), COUNT(*) FROM "+dbname+"."+backend.MessagesTable+" WHERE session_id = ?", session).
		Scan(&distinct, &lo, &hi, &msgs); err != nil {
		t.Fatalf("messages: %v", err)
	}
	if count.Int64 != int64(turns) || distinct.Int64 != int64(turns) || lo.Int64 != 1 || hi.Int64 != int64(turns) || msgs.Int64 != int64(turns*perTurn) {
		t.Errorf("session %s: turn_count %d, %d distinct sequences from %d to %d, %d messages; want %d turns numbered 1 to %d, %d messages",
			session, count.Int64, distinct.Int64, lo.Int64, hi.Int64, msgs.Int64, turns, turns, turns*perTurn)
	}
}

// galeraErrorKind names the class of a save's error a caller may retry
// with the same turn ID: a certification conflict or deadlock the store
// gave up on, an unknown outcome, a deadline, or a lost or refused
// connection; "other" for anything else.
func galeraErrorKind(err error) string {
	var opErr *net.OpError
	switch {
	case errors.Is(err, dataflow.ErrOutcomeUnknown):
		return "outcome-unknown"
	case dataflow.Retryable(err):
		return "retryable"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.As(err, &opErr):
		return "net"
	case errors.Is(err, mysql.ErrInvalidConn), sqlcore.ConnLost(err):
		return "conn-lost"
	}
	if n, _, ok := sqlcore.MySQLErrno(err); ok && n == sqlcore.MySQLWsrepNotPrepared {
		return "not-primary"
	}
	return "other"
}

// historyIDs reads every turn ID of the session, oldest first, page by
// page.
func historyIDs(t *testing.T, m *memory.PersistentBufferMemory, session string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ids []string
	q := memory.HistoryQuery{Limit: driver.MaxListLimit}
	for {
		page, err := m.History(ctx, session, q)
		if err != nil {
			t.Fatalf("History(%q): %v", session, err)
		}
		for _, turn := range page.Turns {
			ids = append(ids, turn.ID)
		}
		if page.Next == "" {
			return ids
		}
		q.After = page.Next
	}
}

// checkTurns fails t unless ids holds every acknowledged turn, nothing
// twice, and nothing that was not attempted.
func checkTurns(t *testing.T, session string, ids []string, acked, attempted map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
		if seen[id] == 2 {
			t.Errorf("session %s: turn %s stored twice", session, id)
		}
		if !attempted[id] {
			t.Errorf("session %s: turn %s was never saved", session, id)
		}
	}
	var lost []string
	for id := range acked {
		if seen[id] == 0 {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		slices.Sort(lost)
		t.Errorf("session %s: %d acknowledged turns lost, e.g. %v", session, len(lost), lost[:min(len(lost), 5)])
	}
}

// What a save and a load cost on one node of the cluster, beside a single
// MariaDB started here with the same settings but no wsrep: the median of
// saveCostRounds saves of a two-message turn into one session, and of as
// many loads of its 10-turn window (the store's read, not the cache).
// Reported, not judged.
func (c *galeraCluster) testSaveCost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	single, err := dbtest.NewMariaDBServer(dbtest.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := single.Remove(); err != nil {
			t.Logf("remove mariadb: %v", err)
		}
	})
	if err := single.Start(ctx, false); err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("mysql", single.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE tk CHARACTER SET utf8mb4"); err != nil {
		t.Fatal(err)
	}
	galeraDB := c.database(t)
	type target struct{ name, url string }
	var lines []string
	var base [2]time.Duration
	for i, tg := range []target{
		{"single MariaDB", single.URL("tk")},
		{"Galera node (causal reads)", c.g.Nodes[0].URL(galeraDB)},
		{"Galera node (wsrep_sync_wait=0)", c.g.Nodes[0].URL(galeraDB) + "?wsrep_sync_wait=0"},
	} {
		save, load := measureSaveLoad(t, ctx, tg.url, fmt.Sprintf("cost-%d", i))
		if i == 0 {
			base = [2]time.Duration{save, load}
		}
		lines = append(lines, fmt.Sprintf("%s: save p50 %s (%.1fx), load p50 %s (%.1fx)", tg.name,
			save.Round(time.Microsecond), float64(save)/float64(base[0]), load.Round(time.Microsecond), float64(load)/float64(base[1])))
	}
	t.Logf("save and load on one node, %d each:\n\t%s", saveCostRounds, strings.Join(lines, "\n\t"))
}

const saveCostRounds = 200

// measureSaveLoad returns the median save and the median load of session
// on url.
func measureSaveLoad(t *testing.T, ctx context.Context, url, session string) (save, load time.Duration) {
	t.Helper()
	db := openDB(t, url)
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		t.Fatal(err)
	}
	key := driver.SessionKey("", session)
	turn := func(i int) driver.Turn {
		return driver.Turn{ID: fmt.Sprintf("t%d", i), User: "what is the weather like today", Agent: "sunny, 21 degrees", Timestamp: time.Now()}
	}
	for i := range 10 { // warm: tables made, a window to read
		if err := storeTurn(ctx, b, key, turn(-1-i)); err != nil {
			t.Fatal(err)
		}
	}
	saves := make([]time.Duration, saveCostRounds)
	loads := make([]time.Duration, saveCostRounds)
	for i := range saveCostRounds {
		start := time.Now()
		if err := storeTurn(ctx, b, key, turn(i)); err != nil {
			t.Fatal(err)
		}
		saves[i] = time.Since(start)
	}
	for i := range saveCostRounds {
		start := time.Now()
		if _, err := readWindow(ctx, b, key, 10); err != nil {
			t.Fatal(err)
		}
		loads[i] = time.Since(start)
	}
	slices.Sort(saves)
	slices.Sort(loads)
	return saves[len(saves)/2], loads[len(loads)/2]
}

// A node is SIGKILLed while writers on every node save turns, each call
// with a deadline of nodeLossCallTimeout. The survivors' writers go on;
// every call returns, at the latest soon after its deadline, with success
// or an error a caller can act on (an unknown outcome, a deadline, a
// retryable conflict, a lost or refused connection); the node is started
// again and rejoins by state transfer; every acknowledged turn is then on
// it, none twice. With TURNKEEP_GALERA_FULL=1 each node is killed in turn.
func (c *galeraCluster) testNodeLoss(t *testing.T) {
	victims := []int{1}
	if os.Getenv(envGaleraFull) != "" {
		victims = []int{1, 0, 2}
	} else {
		t.Logf("one node killed (node 2); set %s=1 to kill each node in turn", envGaleraFull)
	}
	dbname := c.database(t)
	servers := make([]galeraServer, len(c.g.Nodes))
	for i := range servers {
		servers[i] = c.server(t, i, dbname)
	}
	acked := map[string]map[string]bool{}     // session → turns acknowledged
	attempted := map[string]map[string]bool{} // session → turns sent
	for round, victim := range victims {
		c.killUnderLoad(t, dbname, servers, round, victim, acked, attempted)
		if t.Failed() {
			return
		}
	}
}

const nodeLossCallTimeout = 3 * time.Second

// nodeLossCall is one save a writer made.
type nodeLossCall struct {
	node       int
	writer     int
	start, end time.Time
	err        error
}

func (c *galeraCluster) killUnderLoad(t *testing.T, dbname string, servers []galeraServer, round, victim int, acked, attempted map[string]map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const writersPerNode = 2
	var (
		mu     sync.Mutex
		calls  []nodeLossCall
		wg     sync.WaitGroup
		stop   = make(chan struct{})
		killed atomic.Int64 // UnixNano of the kill
	)
	survivorAcks := func() int { // acknowledged on survivors since the kill
		mu.Lock()
		defer mu.Unlock()
		k, n := killed.Load(), 0
		for _, call := range calls {
			if call.node != victim && call.err == nil && k != 0 && call.start.UnixNano() > k {
				n++
			}
		}
		return n
	}
	writersAcked := func() int { // writers with a save acknowledged
		mu.Lock()
		defer mu.Unlock()
		seen := map[int]bool{}
		for _, call := range calls {
			if call.err == nil {
				seen[call.writer] = true
			}
		}
		return len(seen)
	}
	for i, s := range servers {
		for w := range writersPerNode {
			writer := i*writersPerNode + w
			session := fmt.Sprintf("loss-%d-n%d-w%d", round, i+1, w)
			mu.Lock()
			acked[session], attempted[session] = map[string]bool{}, map[string]bool{}
			mu.Unlock()
			wg.Go(func() {
				k := 0
				for {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("t%04d", k)
					mu.Lock()
					attempted[session][id] = true
					mu.Unlock()
					cctx, ccancel := context.WithTimeout(ctx, nodeLossCallTimeout)
					call := nodeLossCall{node: i, writer: writer, start: time.Now()}
					call.err = s.m.SaveTurn(cctx, session, memory.Turn{ID: id, User: "during the node loss", Agent: "ok"})
					call.end = time.Now()
					ccancel()
					mu.Lock()
					calls = append(calls, call)
					if call.err == nil {
						acked[session][id] = true
					}
					mu.Unlock()
					if call.err == nil {
						k++ // else the same ID again: a retry stores it once
					} else {
						time.Sleep(50 * time.Millisecond)
					}
				}
			})
		}
	}
	// Warm: every writer has had a save acknowledged (the first ones make
	// the tables), and the load has run for a second.
	warm := time.Now()
	for time.Since(warm) < time.Second || writersAcked() < len(servers)*writersPerNode {
		if time.Since(warm) > time.Minute {
			t.Fatalf("round %d: %d saves acknowledged in a minute before the kill", round, writersAcked())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.g.Nodes[victim].Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	killed.Store(killedAt.UnixNano())
	// Load goes on until the survivors have acknowledged 50 saves since
	// the kill, or a minute passes.
	for survivorAcks() < 50 && time.Since(killedAt) < time.Minute {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	// The stall: on the survivors, the longest stretch without an
	// acknowledged save that spans the kill.
	var lastBefore, firstAfter time.Time
	kinds := map[string]int{}
	var inFlight, overshootN int
	var maxOvershoot time.Duration
	for _, call := range calls {
		if call.node != victim && call.err == nil {
			if call.end.Before(killedAt) && call.end.After(lastBefore) {
				lastBefore = call.end
			}
			if call.start.After(killedAt) && (firstAfter.IsZero() || call.end.Before(firstAfter)) {
				firstAfter = call.end
			}
		}
		if call.start.Before(killedAt) && call.end.After(killedAt) {
			inFlight++
		}
		if call.err != nil {
			kind := galeraErrorKind(call.err)
			kinds[fmt.Sprintf("node%d:%s", call.node+1, kind)]++
			if kind == "other" {
				t.Errorf("node %d: a save failed with an error a caller cannot act on: %v", call.node+1, call.err)
			}
			if over := call.end.Sub(call.start) - nodeLossCallTimeout; over > 0 {
				overshootN++
				maxOvershoot = max(maxOvershoot, over)
			}
		}
		if d := call.end.Sub(call.start); d > nodeLossCallTimeout+10*time.Second {
			t.Errorf("node %d: a save returned %s after it began, its deadline %s: it hung", call.node+1, d.Round(time.Millisecond), nodeLossCallTimeout)
		}
	}
	if firstAfter.IsZero() {
		t.Fatalf("round %d: the survivors acknowledged no save within a minute of node %d's loss; errors %v", round, victim+1, kinds)
	}
	t.Logf("round %d: node %d SIGKILLed under load: survivors' write stall %s (last ack before the kill to first ack of a save begun after it; first ack %s after the kill); %d calls in flight at the kill; errors %v; %d calls passed their %s deadline, by at most %s",
		round, victim+1, firstAfter.Sub(lastBefore).Round(time.Millisecond), firstAfter.Sub(killedAt).Round(time.Millisecond),
		inFlight, kinds, overshootN, nodeLossCallTimeout, maxOvershoot.Round(time.Millisecond))

	// The node rejoins; every acknowledged turn is on it, once.
	start := time.Now()
	if err := c.g.Restart(ctx, victim, len(c.g.Nodes)); err != nil {
		t.Fatalf("restart node %d: %v", victim+1, err)
	}
	transfer := "IST"
	if b, err := os.ReadFile(c.g.Nodes[victim].ErrorLog()); err == nil && !strings.Contains(string(b[max(0, len(b)-200_000):]), "IST received") {
		transfer = "SST or none"
	}
	t.Logf("round %d: node %d rejoined and Synced in %s (%s)", round, victim+1, time.Since(start).Round(time.Millisecond), transfer)
	rejoined := c.server(t, victim, dbname)
	sessions := 0
	for session := range acked {
		checkTurns(t, session, historyIDs(t, rejoined.m, session), acked[session], attempted[session])
		sessions++
	}
	// The rejoined node's own server takes writes again.
	if err := servers[victim].m.SaveTurn(ctx, fmt.Sprintf("after-rejoin-%d", round), memory.Turn{User: "back", Agent: "ok"}); err != nil {
		t.Errorf("node %d's server after the rejoin: %v", victim+1, err)
	}
	t.Logf("round %d: %d sessions checked on the rejoined node", round, sessions)
}
