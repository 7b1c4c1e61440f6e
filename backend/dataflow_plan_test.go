package backend

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// fillSessions stores sessions × turns rows shaped exactly as SaveTurn
// writes them, in bulk.
func fillSessions(t *testing.T, b *DataFlowBackend, sessions, turns int) {
	t.Helper()
	ctx := context.Background()
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var srows []SessionRow
	var mrows []MessageRow
	for s := range sessions {
		id := fmt.Sprintf("session-%03d", s)
		srows = append(srows, SessionRow{ID: id, TurnCount: int64(turns), CreatedAt: at, UpdatedAt: at})
		for i := 1; i <= turns; i++ {
			turnID := fmt.Sprintf("%s-turn-%03d", id, i)
			ts := at.Add(time.Duration(i) * time.Second)
			mrows = append(mrows,
				MessageRow{SessionID: id, Seq: int64(i), Pos: 0, TurnID: turnID, Role: string(driver.RoleUser),
					Content: fmt.Sprintf("question %d of %s, with some realistic length to it", i, id), CreatedAt: ts},
				MessageRow{SessionID: id, Seq: int64(i), Pos: 1, TurnID: turnID, Role: string(driver.RoleAssistant),
					Content: fmt.Sprintf("answer %d of %s, usually longer than the question that came before", i, id), CreatedAt: ts})
		}
	}
	require.NoError(t, b.sessions.BulkCreate(ctx, srows))
	require.NoError(t, b.messages.BulkCreate(ctx, mrows))
}

// explain returns the plan of the backend's load statement, one line per
// plan node.
func explain(t *testing.T, b *DataFlowBackend, sessionID string, maxTurns int) []string {
	t.Helper()
	return explainWith(t, b, planPrefix(b), sessionID, maxTurns)
}

// explainWith is explain with the EXPLAIN prefix given (on PostgreSQL, for
// example, with ANALYZE).
func explainWith(t *testing.T, b *DataFlowBackend, prefix, sessionID string, maxTurns int) []string {
	t.Helper()
	return explainQuery(t, b, prefix, b.loadWindow.String(), int64(driver.UnknownVersion)-1, maxTurns, sessionID)
}

// explainQuery returns the plan of query with args under prefix (EXPLAIN
// QUERY PLAN on SQLite, an EXPLAIN form on PostgreSQL), one line per plan
// node.
func explainQuery(t testing.TB, b *DataFlowBackend, prefix, query string, args ...any) []string {
	t.Helper()
	pg := b.db.Dialect() == "pg"
	rows, err := b.db.QueryContext(context.Background(), prefix+query, args...)
	require.NoError(t, err)
	defer rows.Close()
	if b.db.Dialect() == "mysql" {
		return mysqlPlanRows(t, rows)
	}
	var plan []string
	for rows.Next() {
		if pg {
			var line string
			require.NoError(t, rows.Scan(&line))
			plan = append(plan, line)
			continue
		}
		var id, parent, notUsed int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &notUsed, &detail))
		plan = append(plan, detail)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, plan)
	return plan
}

// planPrefix is the EXPLAIN form of b's dialect.
func planPrefix(b *DataFlowBackend) string {
	if b.db.Dialect() == "pg" || b.db.Dialect() == "mysql" {
		return "EXPLAIN "
	}
	return "EXPLAIN QUERY PLAN "
}

// The load statement is an index range scan over the newest turns: no full
// scan, no sort, on realistic, analyzed data.
func TestDataFlowBackendLoadPlan(t *testing.T) {
	const sessions, turns, window = 50, 40, 10
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		fillSessions(t, b, sessions, turns)
		analyzeAll(t, b)

		// The bulk rows read back like saved turns: the newest window of a
		// middle session is turns 31..40.
		w := loadWindow(t, b, "session-025", window)
		require.Equal(t, turns, w.TurnCount)
		require.Len(t, w.Turns, window)
		assert.Equal(t, "session-025-turn-031", w.Turns[0].ID)
		assert.Equal(t, "session-025-turn-040", w.Turns[window-1].ID)

		for _, tc := range []struct {
			name, session string
			maxTurns      int
		}{
			{"middle session", "session-025", window},
			{"first session", "session-000", window},
			{"window of 1", "session-049", 1},
			{"unknown session", "nobody", window},
		} {
			t.Run(tc.name, func(t *testing.T) {
				plan := explain(t, b, tc.session, tc.maxTurns)
				text := strings.Join(plan, "\n")
				t.Logf("plan:\n%s", text)
				switch {
				case d.Name == "pg" && tc.session == "nobody":
					assertPGPlanNoSession(t, b, tc.session, tc.maxTurns, text)
				case d.Name == "pg":
					assertPGPlan(t, text)
				case d.Name == "mysql" && tc.session == "nobody":
					assertMySQLPlanNoSession(t, text)
				case d.Name == "mysql":
					assertMySQLLoadPlan(t, text)
				default:
					assertSQLitePlan(t, text)
				}
			})
		}

		// With many sessions the turn count is a key lookup too, on every
		// dialect (SQLite always uses the key).
		t.Run("many sessions", func(t *testing.T) {
			var more []SessionRow
			for i := range 5000 {
				more = append(more, SessionRow{ID: fmt.Sprintf("idle-%05d", i), TurnCount: 0,
					CreatedAt: time.Unix(0, 0).UTC(), UpdatedAt: time.Unix(0, 0).UTC()})
			}
			require.NoError(t, b.sessions.BulkCreate(ctx, more))
			analyzeAll(t, b)
			text := strings.Join(explain(t, b, "session-025", window), "\n")
			t.Logf("plan:\n%s", text)
			if d.Name == "pg" {
				assertPGPlan(t, text)
				assert.NotContains(t, text, "Seq Scan", "a full scan")
				assert.Regexp(t, `Index (Only )?Scan using turnkeep_sessions_pkey on turnkeep_sessions s`, text,
					"the turn count must be a key lookup")
			} else if d.Name == "mysql" {
				assertMySQLLoadPlan(t, text)
			} else {
				assertSQLitePlan(t, text)
			}
		})
	})
}

func assertSQLitePlan(t *testing.T, plan string) {
	t.Helper()
	plan = withoutSessionCoroutineScan(plan)
	assert.Regexp(t, regexp.MustCompile(`(?m)^SEARCH m USING PRIMARY KEY \(session_id=\? AND seq>\? AND seq<\?\)( LEFT-JOIN)?$`), plan,
		"the messages must be an index range scan on (session_id, seq)")
	assert.NotRegexp(t, regexp.MustCompile(`(?m)^SCAN `), plan, "a full scan")
	assert.NotContains(t, plan, "TEMP B-TREE", "a sort")
	assert.Regexp(t, regexp.MustCompile(`(?m)^SEARCH s USING (COVERING )?INDEX \S+ \(id=\?\)`), plan,
		"the turn count must be a key lookup")
}

// withoutSessionCoroutineScan drops from a SQLite plan the scan of the
// co-routine s, the session row's subquery (LIMIT 1: one row at most),
// which is no table scan.
func withoutSessionCoroutineScan(plan string) string {
	if !strings.Contains(plan, "CO-ROUTINE s\n") {
		return plan
	}
	// The scans of the one-row session CTE s and of the fork chain c
	// (a row per session of the chain) read no table.
	lines := strings.Split(plan, "\n")
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return l == "SCAN s" || l == "SCAN c" }), "\n")
}

func assertPGPlan(t *testing.T, plan string) {
	t.Helper()
	lines := strings.Split(plan, "\n")
	// The messages are a LATERAL subquery (alias x) over the session row.
	i := indexOf(lines, regexp.MustCompile(`Index Scan using turnkeep_messages_pkey on turnkeep_messages x\b`))
	if assert.GreaterOrEqual(t, i, 0, "the messages must be an index scan on the primary key") && assert.Less(t, i+1, len(lines)) {
		assert.Regexp(t, `Index Cond: .*session_id.*seq > `, lines[i+1], "the index scan must be bounded on seq")
	}
	assert.NotContains(t, plan, "Seq Scan on turnkeep_messages", "a full scan")
	assert.NotRegexp(t, `\bSort\b`, plan, "a sort")
	assert.NotContains(t, plan, "Bitmap Heap Scan on turnkeep_messages", "a bitmap scan (needs a sort to order rows)")
	// With few sessions the planner may read the one-page sessions table
	// whole; TestDataFlowBackendLoadPlan checks the lookup with many.
}

// assertPGPlanNoSession checks the plan for a session that does not exist.
// The messages are the inner side of a LEFT JOIN on the session row, so
// with no row they are never read: the planner, estimating one row either
// way, may then pick any index of the messages, unbounded on seq (seen:
// turnkeep_messages_turn_idx, the seq bound a join filter). What matters is
// that the plan never reads them, which EXPLAIN ANALYZE shows.
func assertPGPlanNoSession(t *testing.T, b *DataFlowBackend, sessionID string, maxTurns int, plan string) {
	t.Helper()
	assert.NotContains(t, plan, "Seq Scan on turnkeep_messages", "a full scan")
	assert.NotRegexp(t, `\bSort\b`, plan, "a sort")
	assert.NotContains(t, plan, "Bitmap Heap Scan on turnkeep_messages", "a bitmap scan (needs a sort to order rows)")
	analyzed := explainWith(t, b, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) ", sessionID, maxTurns)
	t.Logf("analyzed:\n%s", strings.Join(analyzed, "\n"))
	i := indexOf(analyzed, regexp.MustCompile(`Scan .*on turnkeep_messages x\b`))
	if assert.GreaterOrEqual(t, i, 0, "no scan of the messages in the plan") {
		assert.Contains(t, analyzed[i], "(never executed)", "the messages of a session that does not exist were read")
	}
}

func indexOf(lines []string, re *regexp.Regexp) int {
	for i, l := range lines {
		if re.MatchString(l) {
			return i
		}
	}
	return -1
}

// After warm-up, SaveTurn runs exactly two statements besides BEGIN and
// COMMIT (on PostgreSQL one statement, on MySQL one text of several
// statements that begins and commits its own transaction) and LoadWindow
// exactly one; none of them is a catalog, DDL or migration history
// statement.
func TestDataFlowBackendStatementCounts(t *testing.T) {
	ctx := context.Background()
	type op struct {
		name     string
		run      func(b *DataFlowBackend, m *memory.PersistentBufferMemory) error
		wantData []string // regexps of the data statements, in order
		wantTx   bool     // runs in a transaction
	}
	save := func(id string, turn driver.Turn) func(*DataFlowBackend, *memory.PersistentBufferMemory) error {
		return func(b *DataFlowBackend, _ *memory.PersistentBufferMemory) error { return storeTurn(ctx, b, id, turn) }
	}
	const (
		known   = `^SELECT 1 FROM turnkeep_messages WHERE session_id = \S+ AND turn_id = \S+ AND pos = 0$`
		erased  = `^SELECT COUNT\(\*\) FROM turnkeep_erased WHERE id = `
		upsert  = `^INSERT INTO turnkeep_sessions .*ON CONFLICT \(id\) DO UPDATE .*RETURNING turn_count, version, tokens$`
		saveOne = `^WITH o AS \(.*INSERT INTO turnkeep_sessions .*ON CONFLICT \(id\) DO UPDATE .*INSERT INTO turnkeep_messages .*FROM \(SELECT 1\) one LEFT JOIN s ON TRUE LEFT JOIN o ON TRUE$`
		lock    = `^INSERT INTO turnkeep_sessions .*ON CONFLICT \(id\) DO UPDATE SET turn_count = turnkeep_sessions\.turn_count$`
		insert  = `^INSERT INTO turnkeep_messages .*ON CONFLICT \(session_id, turn_id, pos\)( WHERE pos = 0)? DO NOTHING$`
		// The load walks the session's fork chain (one row for a session
		// that is no fork) and reads a primary-key range per chain row.
		load = `^WITH RECURSIVE h AS \(SELECT s\.id, .* FROM turnkeep_sessions s WHERE s\.id = (\?|\$\d+)\),.*SELECT s\.turn_count, s\.version, .* FROM s CROSS JOIN c (LEFT JOIN turnkeep_messages m ON m\.session_id = c\.id AND m\.seq > s\.lo AND m\.seq <= c\.hi AND m\.seq <= s\.hi|LEFT JOIN LATERAL \(SELECT \* FROM turnkeep_messages x WHERE x\.session_id = c\.id AND x\.seq > s\.lo AND x\.seq <= c\.hi AND x\.seq <= s\.hi OFFSET 0\) m ON TRUE)$`
		// A destructive operation first finds the forks that share the
		// session's turns (none here): one read of the base index.
		deps = `^SELECT d\.id, d\.base, d\.base_seq, p\.base, p\.base_seq FROM turnkeep_sessions p JOIN turnkeep_sessions d ON d\.base = p\.id WHERE p\.id = (\?|\$1) AND d\.base <> ''( FOR UPDATE)?$`
		// On SQLite the search index is an FTS5 table that a save does not
		// write: a trigger queues its messages, and the index catches up
		// in batches (on PostgreSQL the save's own row carries it). What
		// deletes a session deletes its entries and its queued messages.
		unqueue = `^DELETE FROM turnkeep_search_queue WHERE tenant = \? AND skey = \?$`
		unindex = `^DELETE FROM turnkeep_search WHERE turnkeep_search MATCH \?$`
		// On MySQL a save is one text (one round trip) that begins and
		// commits its transaction and ends with a read of the result; the
		// lock is an upsert without ON CONFLICT;
		saveMySQL = `^SET @tk_seq = NULL, .*; START TRANSACTION; SELECT COUNT\(\*\) INTO @tk_known FROM turnkeep_messages WHERE session_id = \? .*; (INSERT INTO turnkeep_sessions .*ON DUPLICATE KEY UPDATE|UPDATE turnkeep_sessions SET) .*; INSERT INTO turnkeep_messages .*COMMIT; (END IF; END; )?SELECT @tk_seq, @tk_ver, @tk_known, .*$`
		// the load walks the session's fork chain by key (a session that
		// is no fork: its row alone), then reads its own range and, after
		// a UNION ALL, its ancestors' ranges, in one statement;
		loadMySQL = `^WITH RECURSIVE h AS \(SELECT s\.id, s\.turn_count, s\.version, .* FROM turnkeep_sessions s WHERE s\.id = \?\), c .* FROM s LEFT JOIN turnkeep_messages m ON m\.session_id = s\.id AND m\.seq > s\.lo AND m\.seq <= s\.hi UNION ALL .*$`
		lockMySQL = `^INSERT INTO turnkeep_sessions .*ON DUPLICATE KEY UPDATE turn_count = turn_count$`
		// A guarded save on PostgreSQL: the same one statement, its
		// session step the upsert (Seq 1) or an UPDATE (a later Seq).
		saveGuarded = `^WITH o AS \(.*(INSERT INTO turnkeep_sessions .*ON CONFLICT \(id\) DO UPDATE .* WHERE turnkeep_sessions\.turn_count = 0|UPDATE turnkeep_sessions SET .* WHERE id = \$\d+ AND turn_count = ).*INSERT INTO turnkeep_messages .*FROM \(SELECT 1\) one LEFT JOIN s ON TRUE LEFT JOIN o ON TRUE$`
	)
	guarded := 0 // the Seq of the last guarded save: each round saves the next
	conflicts := func(b *DataFlowBackend, _ *memory.PersistentBufferMemory) error {
		err := storeTurn(ctx, b, "warm", driver.Turn{User: "late", Seq: 1})
		if !errors.Is(err, driver.ErrConflict) {
			return fmt.Errorf("a save of Seq 1 into a session of turns: %v; want ErrConflict", err)
		}
		return nil
	}
	ops := []op{
		{name: "SaveTurn new session", run: save("new", driver.Turn{User: "u", Agent: "a"}), wantData: []string{upsert, insert}, wantTx: true},
		{name: "SaveTurn existing session", run: save("warm", driver.Turn{User: "u", Agent: "a", Metadata: map[string]any{"k": "v"}}), wantData: []string{upsert, insert}, wantTx: true},
		{name: "SaveTurn duplicate ID", run: save("warm", driver.Turn{ID: "warm-1", User: "u"}), wantData: []string{upsert, insert}, wantTx: true},
		// A guarded save costs what a save does: the count is checked in
		// the upsert's transaction (SQLite) or the one statement.
		{name: "SaveTurn guarded", run: func(b *DataFlowBackend, _ *memory.PersistentBufferMemory) error {
			guarded++
			return storeTurn(ctx, b, "guarded", driver.Turn{User: "u", Seq: guarded})
		}, wantData: []string{upsert, insert}, wantTx: true},
		// A refused one: the upsert, rolled back, then whether the session
		// holds the turn's ID (on PostgreSQL after whether it was erased,
		// which an empty result also means).
		{name: "SaveTurn guarded conflict", run: conflicts, wantData: []string{upsert, known}, wantTx: true},
		{name: "LoadWindow", run: func(b *DataFlowBackend, _ *memory.PersistentBufferMemory) error {
			_, err := readWindow(ctx, b, "warm", 10)
			return err
		}, wantData: []string{load}},
		{name: "LoadWindow unknown session", run: func(b *DataFlowBackend, _ *memory.PersistentBufferMemory) error {
			_, err := readWindow(ctx, b, "nobody", 10)
			return err
		}, wantData: []string{load}},
		{name: "memory SaveTurn", run: func(_ *DataFlowBackend, m *memory.PersistentBufferMemory) error {
			return m.SaveTurn(ctx, "mem", driver.Turn{User: "u"})
		}, wantData: []string{upsert, insert}, wantTx: true},
		{name: "memory LoadContext miss", run: func(_ *DataFlowBackend, m *memory.PersistentBufferMemory) error {
			m.InvalidateCache("mem")
			_, err := m.LoadContext(ctx, "mem")
			return err
		}, wantData: []string{load}},
		// A hit confirms the cached window with the same statement, which
		// then reads the session row alone.
		{name: "memory LoadContext hit", run: func(_ *DataFlowBackend, m *memory.PersistentBufferMemory) error {
			_, err := m.LoadContext(ctx, "mem")
			return err
		}, wantData: []string{load}},
		{name: "memory SaveTurn cached", run: func(_ *DataFlowBackend, m *memory.PersistentBufferMemory) error {
			return m.SaveTurn(ctx, "mem", driver.Turn{User: "u2"})
		}, wantData: []string{upsert, insert}, wantTx: true},
		{name: "SessionInfo", run: func(b *DataFlowBackend, _ *memory.PersistentBufferMemory) error {
			_, err := b.SessionInfo(ctx, "warm")
			return err
		}, wantData: []string{`^SELECT .* FROM "?turnkeep_sessions"? WHERE`}},
		{name: "ClearSession", run: func(b *DataFlowBackend, _ *memory.PersistentBufferMemory) error {
			return b.ClearSession(ctx, "new")
		}, wantData: []string{lock, deps, unqueue, unindex, "^DELETE FROM [\"`]?turnkeep_messages", "^DELETE FROM [\"`]?turnkeep_summaries", "^DELETE FROM [\"`]?turnkeep_sessions"}, wantTx: true},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		guarded = 0
		b, rec := newEnv(t, d)
		m := newMemory(t, b, memory.WithCacheTTL(time.Hour))
		// Warm-up: first use of both tables.
		require.NoError(t, storeTurn(ctx, b, "warm", driver.Turn{ID: "warm-1", User: "u"}))
		require.NoError(t, b.ClearSession(ctx, "warm-clear")) // first use of the summaries table a clear deletes from
		warm := byKind(rec.take())
		require.NotEmpty(t, warm[kindDDL], "the warm-up created no table: is the hook seeing statements?")
		require.NotEmpty(t, warm[kindCatalog], "the warm-up inspected no catalog: is the classifier right?")
		t.Logf("warm-up: %d catalog, %d DDL, %d history, %d data, %d tx statements",
			len(warm[kindCatalog]), len(warm[kindDDL]), len(warm[kindHistory]), len(warm[kindData]), len(warm[kindTx]))

		for _, o := range ops {
			switch {
			case d.Name == "pg" && o.name == "SaveTurn guarded":
				o.wantData, o.wantTx = []string{saveGuarded}, false
			case d.Name == "pg" && o.name == "SaveTurn guarded conflict":
				o.wantData, o.wantTx = []string{saveOne, erased, known}, false
			case d.Name == "pg" && slices.Equal(o.wantData, []string{upsert, insert}):
				// On PostgreSQL a save is one statement, outside any
				// explicit transaction: one round trip.
				o.wantData, o.wantTx = []string{saveOne}, false
			case d.Name == "pg":
				o.wantData = slices.DeleteFunc(slices.Clone(o.wantData), func(re string) bool { return re == unindex || re == unqueue })
			case d.Name == "mysql" && o.name == "SaveTurn guarded conflict":
				o.wantData, o.wantTx = []string{saveMySQL, erased, known}, false
			case d.Name == "mysql" && slices.Equal(o.wantData, []string{upsert, insert}):
				// Outside any transaction of database/sql's: the text
				// holds START TRANSACTION and COMMIT.
				o.wantData, o.wantTx = []string{saveMySQL}, false
			case d.Name == "mysql":
				var want []string
				for _, re := range o.wantData {
					switch re {
					case unindex, unqueue: // the rows carry their search text
					case load:
						want = append(want, loadMySQL)
					case lock:
						want = append(want, lockMySQL)
					default:
						want = append(want, re)
					}
				}
				o.wantData = want
			}
			t.Run(o.name, func(t *testing.T) {
				for round := range 3 { // the count is the same every time
					rec.take()
					require.NoError(t, o.run(b, m))
					kinds := byKind(rec.take())
					assert.Empty(t, kinds[kindCatalog], "round %d: catalog statements", round)
					assert.Empty(t, kinds[kindDDL], "round %d: DDL statements", round)
					assert.Empty(t, kinds[kindHistory], "round %d: history statements", round)
					data := kinds[kindData]
					if assert.Len(t, data, len(o.wantData), "round %d: statements besides BEGIN/COMMIT: %q", round, data) {
						for i, re := range o.wantData {
							assert.Regexp(t, regexp.MustCompile(`(?s)`+re), oneLine(data[i]), "round %d: statement %d", round, i)
						}
					}
					assertTxStatements(t, d.Name, o.wantTx, o.name == "SaveTurn duplicate ID" || o.name == "SaveTurn guarded conflict", kinds[kindTx])
				}
			})
		}
	})
}

// assertTxStatements checks the transaction control statements the hook saw.
// On SQLite the engine runs BEGIN IMMEDIATE and COMMIT (or ROLLBACK) itself;
// on PostgreSQL and MySQL database/sql does, unseen by hooks.
func assertTxStatements(t *testing.T, dialect string, inTx, rolledBack bool, got []string) {
	t.Helper()
	var want []string
	if dialect == "sqlite" && inTx {
		want = []string{"BEGIN IMMEDIATE", "COMMIT"}
		if rolledBack {
			want[1] = "ROLLBACK"
		}
	}
	assert.Equal(t, want, got, "transaction statements")
}

func oneLine(q string) string { return strings.Join(strings.Fields(q), " ") }

// analyzeAll refreshes the planner's statistics of every table the load
// reads.
func analyzeAll(t testing.TB, b *DataFlowBackend) {
	t.Helper()
	q := "ANALYZE"
	if b.db.Dialect() == "mysql" {
		q = "ANALYZE TABLE " + SessionsTable + ", " + MessagesTable
	}
	_, err := b.db.ExecContext(context.Background(), q)
	require.NoError(t, err)
}
