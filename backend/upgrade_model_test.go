package backend

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// The fixtures of testdata/upgrade/v1 hold what the release b1aee53, the
// last before the conversation model, wrote: sessions 1 to 3 of 6 turns
// each (v1Turn; session 3 cleared once before them), and session 4 of two
// turns with one side empty. See testdata/upgrade/v1/README.md.
const (
	v1Sessions = 3 // sessions of v1Turn
	v1Turns    = 6
	v1AllRows  = 2 * (v1Sessions*v1Turns + 2) // every turn is two rows
	// v1EmptyRows are the messages of empty content the release stored
	// for session 4's one-sided turns; the data upgrade deletes them.
	v1EmptyRows = 2
)

// The columns of the release's tables, and those this release adds.
var (
	v1SessionCols  = []string{"id", "turn_count", "version", "created_at", "updated_at"}
	v1MessageCols  = []string{"session_id", "seq", "pos", "turn_id", "role", "content", "metadata", "created_at"}
	v1AddedMsgCols = []string{"msg_id", "name", "tool_calls", "tool_call_id", "parts", "msg_metadata", "tokens", "tokens_before", "search_text"}
)

var v1Base = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

// v1Turn is turn i of session s as testdata/upgrade/v1/genfixture saved it.
func v1Turn(s, i int) driver.Turn {
	t := driver.Turn{
		ID:        fmt.Sprintf("v1-s%d-t%d", s, i),
		User:      fmt.Sprintf("question %d of session %d?", i, s),
		Agent:     fmt.Sprintf("answer %d of session %d: %s", i, s, strings.Repeat("lorem ipsum dolor ", i*s)),
		Timestamp: v1Base.Add(time.Duration(s*1000+i) * time.Second),
		Metadata:  map[string]any{"session": float64(s), "turn": float64(i), "tags": []any{"v1", fmt.Sprint(i)}, "nested": map[string]any{"ok": i%2 == 0}},
	}
	if i%3 == 0 {
		t.Metadata = nil
	}
	if s == 2 && i == 4 {
		t.User = "日本語の質問です 🙂"
		t.Agent = "Ответ по-русски, with code: func main() { fmt.Println(42) }"
	}
	return t
}

func v1Session(s int) string { return fmt.Sprintf("session-%d", s) }

// v1Want is turn i of session s as this release must load it: a user and
// an assistant message with derived IDs, counted by c.
func v1Want(s, i int, c driver.TokenCounter) driver.Turn {
	t := v1Turn(s, i)
	t.Messages = []driver.Message{
		{ID: driver.DerivedMessageID(t.ID, 0), Role: driver.RoleUser, Content: t.User},
		{ID: driver.DerivedMessageID(t.ID, 1), Role: driver.RoleAssistant, Content: t.Agent},
	}
	for k := range t.Messages {
		t.Messages[k].Tokens = c.CountTokens(t.Messages[k])
	}
	return t
}

// v1WantWindow is the whole of session s as this release must load it.
func v1WantWindow(s int, c driver.TokenCounter) driver.Window {
	w := driver.Window{TurnCount: v1Turns}
	for i := 1; i <= v1Turns; i++ {
		t := v1Want(s, i, c)
		t.Seq = i
		w.Turns = append(w.Turns, t)
		w.Tokens += t.Tokens()
	}
	return w
}

// v1Fixture returns the URL of a private copy of the release's database
// of dialect d: the SQLite file copied, or the PostgreSQL script run in a
// fresh schema.
func v1Fixture(t testing.TB, d dbtest.Dialect) string {
	t.Helper()
	if d.Name == "pg" {
		url := dbtest.PostgresURL(t)
		script, err := os.ReadFile(filepath.Join("testdata", "upgrade", "v1", "release_pg.sql"))
		require.NoError(t, err)
		raw, err := sql.Open("pgx", url)
		require.NoError(t, err)
		defer raw.Close()
		// One simple-protocol message of many statements.
		_, err = raw.ExecContext(context.Background(), string(script))
		require.NoError(t, err, "run release_pg.sql")
		return url
	}
	data, err := os.ReadFile(filepath.Join("testdata", "upgrade", "v1", "release.db"))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "release.db")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return "sqlite:///" + path
}

// v1Recorder records the statements the engine runs.
type v1Recorder struct {
	mu sync.Mutex
	qs []string
}

func (r *v1Recorder) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	r.mu.Lock()
	r.qs = append(r.qs, ev.Query)
	r.mu.Unlock()
	return ctx
}

func (r *v1Recorder) AfterQuery(context.Context, *bun.QueryEvent) {}

func (r *v1Recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.qs
	r.qs = nil
	return q
}

// v1Open opens url with default options and a recorder; the database is
// closed at cleanup unless the test closed it.
func v1Open(t testing.TB, url string) (*dataflow.DB, *v1Recorder) {
	t.Helper()
	rec := &v1Recorder{}
	db, err := dataflow.Open(context.Background(), url, dataflow.WithQueryHook(rec))
	require.NoError(t, err)
	t.Cleanup(func() {
		if !db.Closed() {
			require.NoError(t, db.Close())
		}
	})
	return db, rec
}

func v1Memory(t testing.TB, b driver.Backend, opts ...memory.Option) *memory.PersistentBufferMemory {
	t.Helper()
	m, err := memory.NewPersistentBufferMemory(b, opts...)
	require.NoError(t, err)
	return m
}

// v1Strings runs a query returning one text column.
func v1Strings(t testing.TB, db *dataflow.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), db.Rebind(q), args...)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func v1Count(t testing.TB, db *dataflow.DB, q string, args ...any) int {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), db.Rebind(q), args...)
	require.NoError(t, err)
	defer rows.Close()
	require.True(t, rows.Next(), "%s: no row: %v", q, rows.Err())
	var n int
	require.NoError(t, rows.Scan(&n))
	require.NoError(t, rows.Close())
	return n
}

// v1Columns returns the columns of table from the catalog, in order.
func v1Columns(t testing.TB, db *dataflow.DB, table string) []string {
	t.Helper()
	if db.Dialect() == "pg" {
		return v1Strings(t, db, `SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position`, table)
	}
	return v1Strings(t, db, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
}

// v1Indexes returns the names of the indexes on table, sorted.
func v1Indexes(t testing.TB, db *dataflow.DB, table string) []string {
	t.Helper()
	var out []string
	switch db.Dialect() {
	case "pg":
		out = v1Strings(t, db, `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ?`, table)
	case "mysql":
		out = v1Strings(t, db, `SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ?`, table)
	default:
		out = v1Strings(t, db, `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?`, table)
	}
	slices.Sort(out)
	return out
}

// v1Rows returns the row counts of the sessions and messages tables.
func v1Rows(t testing.TB, db *dataflow.DB) [2]int {
	t.Helper()
	return [2]int{v1Count(t, db, `SELECT count(*) FROM `+SessionsTable), v1Count(t, db, `SELECT count(*) FROM `+MessagesTable)}
}

// v1Load is Backend.Load of the whole session with no budget.
func v1Load(t testing.TB, b driver.Backend, session string, q driver.WindowQuery) driver.Window {
	t.Helper()
	if q.MaxTurns == 0 {
		q.MaxTurns = 1000
	}
	q.Known = driver.UnknownVersion
	w, _, err := b.Load(context.Background(), session, q)
	require.NoError(t, err)
	return w
}

// v1Budgets are the token budgets around every boundary of w's turns: each
// suffix sum and its neighbours, and none.
func v1Budgets(w driver.Window) []int {
	out := []int{0, 1}
	sum := 0
	for i := len(w.Turns) - 1; i >= 0; i-- {
		sum += w.Turns[i].Tokens()
		out = append(out, sum-1, sum, sum+1)
	}
	return out
}

// A database the release b1aee53 wrote opens under this release with no
// option and upgrades additively: every turn loads as a user and an
// assistant message with derived IDs and counted tokens, metadata intact,
// no row lost, the new columns and index in the catalog.
func TestUpgradeModelV1Loads(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		db, rec := v1Open(t, v1Fixture(t, d))
		require.Equal(t, v1SessionCols, v1Columns(t, db, SessionsTable), "the fixture is not the release's")
		require.Equal(t, v1MessageCols, v1Columns(t, db, MessagesTable), "the fixture is not the release's")
		rowsBefore := v1Rows(t, db)
		require.Equal(t, [2]int{v1Sessions + 1, v1AllRows}, rowsBefore)
		histBefore := map[string][]string{}
		for _, table := range []string{SessionsTable, MessagesTable} {
			h, err := db.Migrator().History(ctx, table)
			require.NoError(t, err)
			require.Len(t, h, 1, "history of %s in the fixture", table)
			histBefore[table] = []string{h[0].Checksum, h[0].Statements}
		}
		rec.take()

		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		m := v1Memory(t, b, memory.WithMaxTurns(100), memory.WithCacheTTL(time.Hour))
		for s := 1; s <= v1Sessions; s++ {
			w := v1LoadContext(t, m, v1Session(s))
			assert.Equal(t, v1WantWindow(s, driver.DefaultTokenCounter), w, "session %d", s)
			// Twice: the second answer comes from the cache, confirmed.
			assert.Equal(t, w, v1LoadContext(t, m, v1Session(s)), "session %d from the cache", s)
		}

		// What the upgrade ran: additions only.
		var ddl []string
		for _, q := range rec.take() {
			if dbtest.Classify(q) == dbtest.KindDDL {
				ddl = append(ddl, q)
			}
		}
		require.NotEmpty(t, ddl, "the first use upgrades the schema")
		for _, q := range ddl {
			t.Logf("upgrade: %s", q)
			// Columns and indexes added; the history table's own
			// idempotent CREATE ... IF NOT EXISTS; nothing rebuilt, and
			// nothing dropped but SQLite's whole turn and message ID
			// indexes, which its partial ones replace (compactKeys).
			// The session key columns are widened on PostgreSQL (varchar
			// lengths only; no rewrite), and the search index is created.
			assert.Regexp(t, `(?i)^(ALTER TABLE \S+ ADD COLUMN |CREATE (UNIQUE )?INDEX IF NOT EXISTS \S*(`+MessagesTable+`|`+SessionsTable+`)_|CREATE (TABLE|INDEX) IF NOT EXISTS \S*turnkeep_migrations|`+
				`ALTER TABLE \S+ ALTER COLUMN "(id|session_id)" TYPE varchar\(320\)$|CREATE VIRTUAL TABLE IF NOT EXISTS `+SearchTable+` USING fts5|CREATE TABLE IF NOT EXISTS `+SearchQueueTable+` |CREATE TRIGGER IF NOT EXISTS `+searchQueueTrigger+` AFTER INSERT ON `+MessagesTable+` |CREATE INDEX IF NOT EXISTS `+MessagesTable+`_search_idx ON \S+ USING GIN|SELECT pg_advisory_xact_lock|DROP INDEX IF EXISTS \S*`+MessagesTable+`_(turn|msg)_idx\S*$)`, q,
				"the upgrade only adds columns and indexes")
		}

		// The catalog: the release's columns first and unchanged, then the new ones.
		assert.Equal(t, append(slices.Clone(v1SessionCols), "tokens", "counted", "tenant", "user_id", "title", "metadata", "fork_of", "fork_turn", "base", "base_seq"), v1Columns(t, db, SessionsTable))
		assert.Equal(t, append(slices.Clone(v1MessageCols), v1AddedMsgCols...), v1Columns(t, db, MessagesTable))
		if db.Dialect() == "sqlite" {
			assert.Subset(t, v1Indexes(t, db, MessagesTable), []string{msgIDIdx, turnHeadIdx})
			assert.NotContains(t, v1Indexes(t, db, MessagesTable), msgIdx)
			assert.NotContains(t, v1Indexes(t, db, MessagesTable), turnIdx)
		} else {
			assert.Subset(t, v1Indexes(t, db, MessagesTable), []string{msgIdx, turnIdx})
		}
		assert.Equal(t, [2]int{rowsBefore[0], rowsBefore[1] - v1EmptyRows}, v1Rows(t, db), "rows after the upgrade: only the empty messages of one-sided turns went")
		// The first use ran the data upgrade over every session, session 4
		// (never read) included: every row has its ID and count, every
		// session is counted, and the history records it done, once.
		assert.Zero(t, v1Count(t, db, `SELECT count(*) FROM `+MessagesTable+` WHERE msg_id IS NULL OR tokens = 0`), "rows left without an ID or a count")
		assert.Empty(t, v1Strings(t, db, `SELECT id FROM `+SessionsTable+` WHERE counted = 0`), "sessions left uncounted")
		up, err := db.Migrator().History(ctx, "upgrade:"+CountedUpgrade)
		require.NoError(t, err)
		assert.Len(t, up, 1, "the data upgrade's record")
		pending, err := db.Migrator().UpgradePending(ctx, b.Upgrades()[0])
		require.NoError(t, err)
		assert.False(t, pending, "the data upgrade is pending after it ran")
		for s := 1; s <= v1Sessions; s++ {
			want := v1WantWindow(s, driver.DefaultTokenCounter)
			assert.Equal(t, want.Tokens, v1Count(t, db, `SELECT tokens FROM `+SessionsTable+` WHERE id = ?`, v1Session(s)), "session %d tokens", s)
		}
		for _, table := range []string{SessionsTable, MessagesTable} {
			h, err := db.Migrator().History(ctx, table)
			require.NoError(t, err)
			if assert.Len(t, h, 2, "history of %s", table) {
				assert.Equal(t, histBefore[table], []string{h[0].Checksum, h[0].Statements}, "the release's entry of %s", table)
				assert.NotEmpty(t, h[1].Checksum, "the upgrade of %s is recorded as complete", table)
			}
		}

		// Session 3 was cleared by the release before its 6 turns: its
		// earlier turns stay gone, and sequences start at 1.
		assert.Equal(t, []int64{1, 2, 3, 4, 5, 6}, v1Seqs(t, db, v1Session(3)))
		assert.Zero(t, v1Count(t, db, `SELECT count(*) FROM `+MessagesTable+` WHERE turn_id LIKE 'v1-s3-old%'`))

		// Counts and info.
		for s := 1; s <= v1Sessions; s++ {
			info, err := b.SessionInfo(ctx, v1Session(s))
			require.NoError(t, err)
			assert.Equal(t, v1Turns, info.TurnCount)
		}

		// Old rows are counted once, by the counter of the first use of a
		// backend on the database (the data upgrade runs then), and keep
		// that count, as every stored message does.
		words := driver.TokenCounterFunc(func(m driver.Message) int { return len(strings.Fields(m.Content)) })
		mw := v1Memory(t, b, memory.WithMaxTurns(100), memory.WithTokenCounter(words))
		assert.Equal(t, v1WantWindow(1, driver.DefaultTokenCounter), v1LoadContext(t, mw, v1Session(1)), "counted already")
		db2, _ := v1Open(t, v1Fixture(t, d))
		b2, err := NewDataFlowBackend(db2)
		require.NoError(t, err)
		mw2 := v1Memory(t, b2, memory.WithMaxTurns(100), memory.WithTokenCounter(words))
		assert.Equal(t, v1WantWindow(1, words), v1LoadContext(t, mw2, v1Session(1)), "counted by WithTokenCounter")
		assert.Equal(t, v1WantWindow(2, words), v1Load(t, b2, v1Session(2), driver.WindowQuery{MaxTurns: 100}), "nil counter: counted by the first use's")
	})
}

func v1LoadContext(t testing.TB, m memory.Memory, session string, opts ...memory.LoadOption) driver.Window {
	t.Helper()
	w, err := m.LoadContext(context.Background(), session, opts...)
	require.NoError(t, err)
	return w
}

// v1Prepared is turn as a load returns it, counted by DefaultTokenCounter.
func v1Prepared(t testing.TB, turn driver.Turn) driver.Turn {
	t.Helper()
	p, _, err := driver.PrepareTurn(turn, time.Now(), 0)
	require.NoError(t, err)
	return p
}

func v1IDs(msgs []driver.Message) []string {
	ids := make([]string, len(msgs))
	for k := range msgs {
		ids[k] = msgs[k].ID
	}
	return ids
}

// v1Seqs returns the sequence numbers of the session's turns.
func v1Seqs(t testing.TB, db *dataflow.DB, session string) []int64 {
	t.Helper()
	var out []int64
	for _, s := range v1Strings(t, db, `SELECT CAST(seq AS TEXT) FROM `+MessagesTable+` WHERE session_id = ? AND pos = 0 ORDER BY seq`, session) {
		var n int64
		_, err := fmt.Sscan(s, &n)
		require.NoError(t, err)
		out = append(out, n)
	}
	return out
}

// v1CheckWindows asserts that every turn and token window of the session,
// through the backend (SQL filter and TrimWindow) and through memories with
// a budget, is what TrimWindow makes of the whole session.
func v1CheckWindows(t *testing.T, b *DataFlowBackend, session string, full driver.Window) {
	t.Helper()
	ctx := context.Background()
	require.NotEmpty(t, full.Turns)
	for _, budget := range v1Budgets(full) {
		for maxTurns := 1; maxTurns <= len(full.Turns)+1; maxTurns++ {
			want := driver.TrimWindow(full, maxTurns, budget)
			got := v1Load(t, b, session, driver.WindowQuery{MaxTurns: maxTurns, TokenBudget: budget})
			if !assert.Equal(t, want, got, "%s: Load(max %d, budget %d)", session, maxTurns, budget) {
				return
			}
		}
		// A memory with the budget (the backend filters), loading through
		// its cache twice, and one without, cut per call.
		m := v1Memory(t, b, memory.WithMaxTurns(100), memory.WithTokenBudget(budget), memory.WithCacheTTL(time.Hour))
		want := driver.TrimWindow(full, 100, budget)
		assert.Equal(t, want, v1LoadContext(t, m, session), "%s: WithTokenBudget(%d)", session, budget)
		assert.Equal(t, want, v1LoadContext(t, m, session), "%s: WithTokenBudget(%d), cached", session, budget)
		plain := v1Memory(t, b, memory.WithMaxTurns(100))
		w, err := plain.LoadContext(ctx, session, memory.LoadTokenBudget(budget))
		require.NoError(t, err)
		assert.Equal(t, want, w, "%s: LoadTokenBudget(%d)", session, budget)
		w, err = plain.LoadContext(ctx, session, memory.LoadTokenBudget(budget), memory.LoadMaxTurns(2))
		require.NoError(t, err)
		assert.Equal(t, driver.TrimWindow(full, 2, budget), w, "%s: LoadTokenBudget(%d), LoadMaxTurns(2)", session, budget)
	}
}

// A token window works on the release's data: exactly TrimWindow's answer
// from the whole history, though the old rows count 0 in the SQL filter.
func TestUpgradeModelV1TokenWindow(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		db, _ := v1Open(t, v1Fixture(t, d))
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		for s := 1; s <= v1Sessions; s++ {
			full := v1Load(t, b, v1Session(s), driver.WindowQuery{})
			require.Equal(t, v1WantWindow(s, driver.DefaultTokenCounter), full)
			v1CheckWindows(t, b, v1Session(s), full)
		}
		// A budget smaller than the newest turn: the newest turn alone, over
		// the budget, the count kept.
		full := v1Load(t, b, v1Session(1), driver.WindowQuery{})
		w := v1Load(t, b, v1Session(1), driver.WindowQuery{TokenBudget: 1})
		newest := full.Turns[len(full.Turns)-1]
		assert.Equal(t, driver.Window{Turns: []driver.Turn{newest}, TurnCount: v1Turns, Tokens: newest.Tokens()}, w)
	})
}

// Turns saved after the upgrade into an old session, and messages
// appended to old turns (one in the middle, one the newest): windows stay
// exact, a retried append stores nothing twice, and what was written reads
// back through another process.
func TestUpgradeModelV1WritesAfterUpgrade(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := v1Fixture(t, d)
		db, _ := v1Open(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		m := v1Memory(t, b, memory.WithMaxTurns(100), memory.WithCacheTTL(time.Hour))
		c := driver.DefaultTokenCounter
		count := func(msgs ...driver.Message) []driver.Message {
			for k := range msgs {
				msgs[k].Tokens = c.CountTokens(msgs[k])
			}
			return msgs
		}

		// Session 1: an append to the newest old turn (on PostgreSQL the
		// one-statement path), a new turn with tool calls, then an append
		// to an old turn in the middle (the transaction path, which moves
		// the later turns' counts).
		want := v1WantWindow(1, c)
		require.Equal(t, want, v1LoadContext(t, m, v1Session(1)))
		late := count(driver.Message{ID: "late-1", Role: driver.RoleAssistant, Content: "a late addition to the newest old turn"})
		require.NoError(t, m.AppendMessages(ctx, v1Session(1), "v1-s1-t6", late...))
		want.Turns[5].Messages = append(want.Turns[5].Messages, late...)
		want.Turns[5].Agent = late[0].Content

		newTurn := driver.Turn{ID: "new-1", Timestamp: v1Base.Add(time.Hour), Metadata: map[string]any{"new": true}, Messages: []driver.Message{
			{Role: driver.RoleUser, Content: "what is the weather in Paris?"},
			{Role: driver.RoleAssistant, ToolCalls: []driver.ToolCall{{ID: "call-1", Name: "weather", Arguments: `{"city":"Paris"}`}}},
			{Role: driver.RoleTool, ToolCallID: "call-1", Content: `{"temp":21}`},
			{Role: driver.RoleAssistant, Content: "It is 21 degrees in Paris."},
		}}
		require.NoError(t, m.SaveTurn(ctx, v1Session(1), newTurn))
		saved := v1Prepared(t, newTurn)
		require.Equal(t, []string{"new-1/0", "new-1/1", "new-1/2", "new-1/3"}, v1IDs(saved.Messages))
		saved.Seq = len(want.Turns) + 1
		want.Turns = append(want.Turns, saved)
		want.TurnCount++

		mid := count(
			driver.Message{ID: "mid-1", Role: driver.RoleAssistant, Content: "a correction to answer 2", Metadata: map[string]any{"edited": true}},
			driver.Message{ID: "mid-2", Role: driver.RoleUser, Content: "thanks", Name: "alice"},
		)
		require.NoError(t, m.AppendMessages(ctx, v1Session(1), "v1-s1-t2", mid...))
		want.Turns[1].Messages = append(want.Turns[1].Messages, mid...)
		want.Turns[1].Agent = mid[0].Content

		want.Tokens = 0
		for _, turn := range want.Turns {
			want.Tokens += turn.Tokens()
		}
		rows := v1Rows(t, db)
		assert.Equal(t, [2]int{v1Sessions + 1, v1AllRows - v1EmptyRows + 1 + 4 + 2}, rows)
		assert.Equal(t, want, v1LoadContext(t, m, v1Session(1)), "session 1 through the memory that wrote it")
		full := v1Load(t, b, v1Session(1), driver.WindowQuery{})
		assert.Equal(t, want, full, "session 1 read back")
		v1CheckWindows(t, b, v1Session(1), full)

		// Retries store nothing twice: the same appends, the same turn,
		// and a loaded old turn saved again as it is.
		for _, retry := range []struct {
			turnID string
			msgs   []driver.Message
		}{{"v1-s1-t2", mid}, {"v1-s1-t2", mid[1:]}, {"v1-s1-t6", late}} {
			enc, err := driver.PrepareMessages(retry.msgs, 0, nil)
			require.NoError(t, err)
			res, err := b.Append(ctx, v1Session(1), retry.turnID, enc)
			require.NoError(t, err)
			assert.False(t, res.Stored, "a retried append to %s", retry.turnID)
			require.NoError(t, m.AppendMessages(ctx, v1Session(1), retry.turnID, retry.msgs...))
		}
		require.NoError(t, m.SaveTurn(ctx, v1Session(1), newTurn))
		require.NoError(t, m.SaveTurn(ctx, v1Session(1), full.Turns[2]), "an old turn as loaded, saved again")
		require.NoError(t, m.SaveTurn(ctx, v1Session(1), v1Turn(1, 4)), "an old turn as the release saved it, saved again")
		assert.Equal(t, rows, v1Rows(t, db), "rows after the retries")
		assert.Equal(t, want, v1LoadContext(t, m, v1Session(1)), "session 1 after the retries")
		info, err := b.SessionInfo(ctx, v1Session(1))
		require.NoError(t, err)
		assert.Equal(t, v1Turns+1, info.TurnCount)

		// Session 2: new turns only after the old ones; their token
		// windows mix stored and load-time counts.
		want2 := v1WantWindow(2, c)
		for i := 1; i <= 3; i++ {
			turn := driver.Turn{ID: fmt.Sprintf("s2-new%d", i), User: fmt.Sprintf("new question %d", i),
				Agent: strings.Repeat("new answer ", 5*i), Timestamp: v1Base.Add(time.Duration(2*3600+i) * time.Second)}
			require.NoError(t, m.SaveTurn(ctx, v1Session(2), turn))
			p := v1Prepared(t, turn)
			p.Seq = len(want2.Turns) + 1
			want2.Turns = append(want2.Turns, p)
			want2.TurnCount++
			want2.Tokens += p.Tokens()
		}
		full2 := v1Load(t, b, v1Session(2), driver.WindowQuery{})
		assert.Equal(t, want2, full2, "session 2 read back")
		v1CheckWindows(t, b, v1Session(2), full2)

		// Another process sees the same, with no further upgrade.
		require.NoError(t, db.Close())
		db2, rec2 := v1Open(t, url)
		b2, err := NewDataFlowBackend(db2)
		require.NoError(t, err)
		assert.Equal(t, want, v1Load(t, b2, v1Session(1), driver.WindowQuery{}), "session 1 in a new process")
		assert.Equal(t, want2, v1Load(t, b2, v1Session(2), driver.WindowQuery{}), "session 2 in a new process")
		for _, q := range rec2.take() {
			assert.NotEqual(t, dbtest.KindDDL, dbtest.Classify(q), "DDL on reopening: %s", q)
		}

		// A clear of an old session removes it whole; the others stay.
		m2 := v1Memory(t, b2, memory.WithMaxTurns(100))
		require.NoError(t, m2.Clear(ctx, v1Session(3)))
		assert.Equal(t, driver.Window{}, v1LoadContext(t, m2, v1Session(3)))
		assert.Equal(t, [2]int{v1Sessions, rows[1] + 6 - 2*v1Turns}, v1Rows(t, db2), "rows after clearing session 3")
	})
}

// An append whose message ID is the derived ID of a message the release
// stored is a message the session holds, as it is for a message stored by
// this release without an ID: it is not stored again.
func TestUpgradeModelV1DerivedIDsAreHeld(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		db, _ := v1Open(t, v1Fixture(t, d))
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		m := v1Memory(t, b, memory.WithMaxTurns(100))

		// New data: a turn saved without message IDs holds the derived ones.
		require.NoError(t, m.SaveTurn(ctx, "fresh", driver.Turn{ID: "f1", User: "q", Agent: "a"}))
		require.NoError(t, m.SaveTurn(ctx, "fresh", driver.Turn{ID: "f2", User: "q2", Agent: "a2"}))
		require.NoError(t, m.AppendMessages(ctx, "fresh", "f2", driver.Message{ID: driver.DerivedMessageID("f1", 1), Role: driver.RoleAssistant, Content: "again"}))
		assert.Len(t, v1LoadContext(t, m, "fresh").Messages(), 4, "new data: a held derived ID is not stored again")

		// Old data: the same.
		require.NoError(t, m.AppendMessages(ctx, v1Session(1), "v1-s1-t6", driver.Message{ID: driver.DerivedMessageID("v1-s1-t5", 1), Role: driver.RoleAssistant, Content: "again"}))
		msgs := v1LoadContext(t, m, v1Session(1)).Messages()
		assert.Len(t, msgs, 2*v1Turns, "old data: a held derived ID is not stored again; IDs %v", v1IDs(msgs))
	})
}

// The release took turns with one side empty and stored the empty side as
// a message of empty content; this release refuses such a message. Loaded
// after the upgrade, such a turn must still be a valid turn: one a memory
// accepts back as it is.
func TestUpgradeModelV1OneSidedTurns(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		db, _ := v1Open(t, v1Fixture(t, d))
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		w := v1Load(t, b, "session-4", driver.WindowQuery{})
		require.Len(t, w.Turns, 2)
		assert.Equal(t, 2, w.TurnCount)
		assert.Equal(t, "a question saved before its answer", w.Turns[0].User)
		assert.Equal(t, "an answer with no question", w.Turns[1].Agent)
		for _, turn := range w.Turns {
			for _, msg := range turn.Messages {
				assert.NotEmpty(t, msg.Content, "turn %s: message %s (%s) loads with empty content, which SaveTurn refuses", turn.ID, msg.ID, msg.Role)
			}
			_, _, err := driver.PrepareTurn(turn, time.Now(), 0)
			assert.NoError(t, err, "turn %s as loaded is refused by PrepareTurn", turn.ID)
		}
	})
}

// The release stored a turn's metadata on its first row, the empty one of
// an answer with no question: the upgrade deletes that row and its new
// head row takes the metadata.
func TestUpgradeModelV1OneSidedTurnMetadata(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		if d.Name == "mysql" {
			t.Skip("the release had no MySQL backend, and v1Fixture has no MySQL database")
		}
		ctx := context.Background()
		db, _ := v1Open(t, v1Fixture(t, d))
		// The fixture's one-sided turns have none: give this one some, as
		// the release stored it.
		_, err := db.ExecContext(ctx, db.Rebind(`UPDATE `+MessagesTable+` SET metadata = ? WHERE session_id = ? AND seq = 2 AND pos = 0`),
			`{"source":"v1"}`, "session-4")
		require.NoError(t, err)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		w := v1Load(t, b, "session-4", driver.WindowQuery{})
		require.Len(t, w.Turns, 2)
		assert.Equal(t, map[string]any{"source": "v1"}, w.Turns[1].Metadata)
		assert.Equal(t, `{"source":"v1"}`, v1Strings(t, db, `SELECT metadata FROM `+MessagesTable+` WHERE session_id = ? AND seq = 2 AND pos = 0`, "session-4")[0],
			"on the turn's head row")
	})
}

// A turn of the release whose empty first message the data upgrade
// deleted (session 4's second turn, "an answer with no question") keeps
// its other row, moved to the head (pos 0) with its ID X/1: by this
// release's CountedUpgrade, or, where an earlier release's left it at
// position 1, by HeadlessUpgrade. No turn is then without its head row,
// and search finds the message at its new place, by its ID. It is held:
// saved again under its ID, in any form, it stores nothing and adds no
// turn (as loaded, as the release saved it, with a question added, with a
// message ID of the app's, guarded by the session's next Seq); an append
// to it goes into it, as into any turn, once.
func TestUpgradeModelV1HeadlessTurnHeld(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		if d.Name == "mysql" {
			t.Skip("the release had no MySQL backend, and v1Fixture has no MySQL database; TestHeadlessUpgrade builds such turns there")
		}
		for _, earlier := range []bool{false, true} {
			name := "upgraded here"
			if earlier {
				name = "upgraded by an earlier release"
			}
			t.Run(name, func(t *testing.T) { v1HeadlessTurnHeld(t, d, earlier) })
		}
	})
}

func v1HeadlessTurnHeld(t *testing.T, d dbtest.Dialect, earlier bool) {
	ctx := context.Background()
	const s, id = "session-4", "v1-s4-t2"
	url := v1Fixture(t, d)
	if earlier {
		db, _ := v1Open(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		v1Load(t, b, s, driver.WindowQuery{})
		_, err = b.Search(ctx, "", driver.SearchQuery{Text: "answer"}) // the entries indexed
		require.NoError(t, err)
		makeHeadless(t, b, s, 2)
		require.NoError(t, db.Close())
	}
	db, _ := v1Open(t, url)
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	w := v1Load(t, b, s, driver.WindowQuery{})
	require.Len(t, w.Turns, 2)
	headless := w.Turns[1]
	require.Equal(t, id, headless.ID)
	require.Equal(t, []string{driver.DerivedMessageID(id, 1)}, v1IDs(headless.Messages), "the turn's one message keeps its ID")
	assertHeaded(t, b, s, id, headless.Messages[0])
	before := tableCounts(t, b)

	answer := headless.Messages[0].Content
	m := v1Memory(t, b, memory.WithMaxTurns(100))
	for _, c := range []struct {
		name   string
		turn   driver.Turn
		memory bool // through a memory's SaveTurn
	}{
		{name: "as loaded", turn: headless},
		{name: "as loaded, through a memory", turn: headless, memory: true},
		{name: "with a question", turn: driver.Turn{ID: id, User: "the question it lacked", Agent: answer}},
		{name: "as the release saved it", turn: driver.Turn{ID: id, Agent: answer, Timestamp: headless.Timestamp}},
		{name: "as the release saved it, through a memory", turn: driver.Turn{ID: id, Agent: answer}, memory: true},
		{name: "with an app's message ID", turn: driver.Turn{ID: id, Messages: []driver.Message{{ID: "app-given", Role: driver.RoleAssistant, Content: answer}}}},
		{name: "guarded by the next Seq", turn: driver.Turn{ID: id, Seq: 3, Agent: answer}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.memory {
				require.NoError(t, m.SaveTurn(ctx, s, c.turn), "saved again")
			} else {
				saved, err := b.Save(ctx, s, driver.PreparedTurn{Turn: c.turn})
				require.NoError(t, err, "saved again")
				assert.False(t, saved.Stored, "the turn is held")
			}
			assert.Equal(t, before, tableCounts(t, b), "nothing stored")
			info, err := b.SessionInfo(ctx, s)
			require.NoError(t, err)
			assert.Equal(t, 2, info.TurnCount, "no turn added")
		})
	}
	assert.Equal(t, w, v1Load(t, b, s, driver.WindowQuery{}), "the session unchanged")

	// Appends: to the headless turn as the newest turn, then, after a
	// new turn, as an older one (the later turn's counts move).
	c := driver.DefaultTokenCounter
	add := func(turnID string, msgs ...driver.Message) driver.Saved {
		t.Helper()
		enc, err := driver.PrepareMessages(msgs, 0, nil)
		require.NoError(t, err)
		saved, err := b.Append(ctx, s, turnID, enc)
		require.NoError(t, err, "append to %s", turnID)
		return saved
	}
	late := driver.Message{ID: "late-1", Role: driver.RoleAssistant, Content: "a late addition to the headless turn"}
	saved := add(id, late)
	assert.True(t, saved.Stored)
	assert.Equal(t, 1, saved.Messages)
	assert.Equal(t, 2, saved.Seq)
	late.Tokens = c.CountTokens(late)
	w.Turns[1].Messages = append(w.Turns[1].Messages, late)
	w.Turns[1].Agent = late.Content
	w.Tokens += late.Tokens

	next := driver.Turn{ID: "s4-new", User: "a new question", Agent: "a new answer", Timestamp: v1Base.Add(time.Hour)}
	require.NoError(t, storeTurn(ctx, b, s, next))
	p := v1Prepared(t, next)
	p.Seq = 3
	w.Turns = append(w.Turns, p)
	w.TurnCount++
	w.Tokens += p.Tokens()

	mid := driver.Message{ID: "mid-1", Role: driver.RoleUser, Content: "and a follow-up, now in the middle"}
	saved = add(id, mid)
	assert.True(t, saved.Stored)
	assert.Equal(t, 2, saved.Seq)
	mid.Tokens = c.CountTokens(mid)
	w.Turns[1].Messages = append(w.Turns[1].Messages, mid)
	w.Turns[1].User = mid.Content
	w.Tokens += mid.Tokens
	assert.False(t, add(id, mid).Stored, "a retried append stores nothing")

	full := v1Load(t, b, s, driver.WindowQuery{})
	assert.Equal(t, w, full)
	v1CheckWindows(t, b, s, full)
	_, err = b.Save(ctx, s, driver.PreparedTurn{Turn: driver.Turn{ID: id, User: "the question it lacked", Agent: answer}})
	require.NoError(t, err)
	assert.Equal(t, full, v1Load(t, b, s, driver.WindowQuery{}), "saved again after the appends: nothing stored")
}

// Opening the upgraded database again runs no DDL and adds no history: the
// ensure path is a no-op, on every statement kind the backend runs.
func TestUpgradeModelV1ReopenNoDDL(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := v1Fixture(t, d)
		db, _ := v1Open(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		_ = v1Load(t, b, v1Session(1), driver.WindowQuery{}) // the upgrade
		// A save makes the table a save reads that a load does not
		// (ErasedTable), as any first use of a table does.
		require.NoError(t, storeTurn(ctx, b, "warm-up", driver.Turn{User: "q", Agent: "a"}))
		// A clear makes the summaries table it deletes from (a session's
		// summary goes with it).
		require.NoError(t, b.ClearSession(ctx, "warm-up-clear"))
		require.NoError(t, db.Close())

		for round := 1; round <= 2; round++ {
			db, rec := v1Open(t, url)
			b, err := NewDataFlowBackend(db)
			require.NoError(t, err)
			hist, err := db.Migrator().History(ctx, MessagesTable)
			require.NoError(t, err)
			rec.take()
			m := v1Memory(t, b, memory.WithMaxTurns(100), memory.WithTokenBudget(500))
			s := v1Session(round) // untouched before this round
			assert.Equal(t, driver.TrimWindow(v1WantWindow(round, driver.DefaultTokenCounter), 100, 500), v1LoadContext(t, m, s))
			id := fmt.Sprintf("reopen-%d", round)
			require.NoError(t, m.SaveTurn(ctx, s, driver.Turn{ID: id, User: "q", Agent: "a"}))
			require.NoError(t, m.AppendMessages(ctx, s, fmt.Sprintf("v1-s%d-t1", round), driver.Message{ID: id + "-x", Role: driver.RoleAssistant, Content: "x"}))
			_, err = b.SessionInfo(ctx, s)
			require.NoError(t, err)
			require.NoError(t, m.Clear(ctx, v1Session(5-round)))
			for _, q := range rec.take() {
				k := dbtest.Classify(q)
				assert.NotEqual(t, dbtest.KindDDL, k, "round %d: DDL: %s", round, q)
				if k == dbtest.KindHistory || k == dbtest.KindCatalog {
					assert.NotRegexp(t, `(?i)^\s*(INSERT|UPDATE|DELETE)`, q, "round %d: a history write: %s", round, q)
				}
			}
			again, err := db.Migrator().History(ctx, MessagesTable)
			require.NoError(t, err)
			assert.Equal(t, hist, again, "round %d: history", round)
			require.NoError(t, db.Close())
		}
	})
}

// BenchmarkCountedUpgrade measures the data upgrade CountedUpgrade, as a
// first use or `turnkeep migrate up` runs it, in messages per second:
// sessions×turns turns of two messages are saved, then put back in the
// form a release before counts left them (no message IDs, no counts, no
// tokens before each turn, the session uncounted, no search entries, the
// upgrade not recorded), and upgraded. docs/upgrade.md quotes it:
//
//	go test -run '^$' -bench BenchmarkCountedUpgrade -benchtime 3x ./backend
func BenchmarkCountedUpgrade(b *testing.B) {
	const sessions, turns = 200, 50
	ctx := context.Background()
	for _, d := range []dbtest.Dialect{{Name: "sqlite", URL: dbtest.SQLiteURL}, {Name: "pg", URL: dbtest.PostgresURL}} {
		b.Run(d.Name, func(b *testing.B) {
			db, be := upgradeBenchStore(b, d, sessions, turns)
			msgs := 2 * sessions * turns
			mig := db.Migrator()
			for b.Loop() {
				b.StopTimer()
				for _, q := range []string{
					`UPDATE ` + MessagesTable + ` SET msg_id = NULL, tokens = 0, tokens_before = 0, search_text = NULL`,
					`UPDATE ` + SessionsTable + ` SET tokens = 0, counted = 0`,
					`DELETE FROM ` + mig.HistoryTable() + ` WHERE table_name = 'upgrade:` + CountedUpgrade + `'`,
				} {
					_, err := db.ExecContext(ctx, q)
					require.NoError(b, err)
				}
				if d.Name == "sqlite" {
					_, err := db.ExecContext(ctx, `DELETE FROM `+SearchTable)
					require.NoError(b, err)
				}
				b.StartTimer()
				res, err := be.RunUpgrades(ctx)
				require.NoError(b, err)
				require.Len(b, res, 2, "CountedUpgrade and HeadlessUpgrade")
				require.EqualValues(b, msgs, res[0].Rows, "rows upgraded")
			}
			b.ReportMetric(float64(msgs*b.N)/b.Elapsed().Seconds(), "msgs/s")
			w := v1Load(b, be, "s0001", driver.WindowQuery{})
			require.Len(b, w.Turns, turns)
			require.Equal(b, driver.DerivedMessageID("t1", 0), w.Turns[0].Messages[0].ID)
		})
	}
}

// upgradeBenchStore is the upgrade benchmarks' store on a new database
// of d: sessions sessions of turns turns of the v1 fixture's kinds, saved
// by this release.
func upgradeBenchStore(b *testing.B, d dbtest.Dialect, sessions, turns int) (*dataflow.DB, *DataFlowBackend) {
	b.Helper()
	ctx := context.Background()
	db, _ := v1Open(b, d.URL(b))
	be, err := NewDataFlowBackend(db)
	require.NoError(b, err)
	for s := range sessions {
		for i := 1; i <= turns; i++ {
			turn := v1Turn(1+s%3, 1+i%6)
			turn.ID = fmt.Sprintf("t%d", i)
			turn.Timestamp = v1Base.Add(time.Duration(i) * time.Minute)
			require.NoError(b, storeTurn(ctx, be, fmt.Sprintf("s%04d", s), turn))
		}
	}
	return db, be
}

// BenchmarkHeadlessUpgrade times HeadlessUpgrade's scan on a database
// whose CountedUpgrade is done and that holds no headless turn, the case
// of every database of a recent release: it reads the messages once and
// moves nothing. msgs/s is messages read per second.
//
//	go test -run '^$' -bench BenchmarkHeadlessUpgrade -benchtime 5x ./backend
func BenchmarkHeadlessUpgrade(b *testing.B) {
	const sessions, turns = 1000, 20
	ctx := context.Background()
	for _, d := range []dbtest.Dialect{{Name: "sqlite", URL: dbtest.SQLiteURL}, {Name: "pg", URL: dbtest.PostgresURL}} {
		b.Run(d.Name, func(b *testing.B) {
			db, be := upgradeBenchStore(b, d, sessions, turns)
			_, err := be.RunUpgrades(ctx)
			require.NoError(b, err)
			msgs := v1Count(b, db, `SELECT count(*) FROM `+MessagesTable)
			mig := db.Migrator()
			for b.Loop() {
				b.StopTimer()
				_, err := db.ExecContext(ctx, `DELETE FROM `+mig.HistoryTable()+` WHERE table_name = 'upgrade:`+HeadlessUpgrade+`'`)
				require.NoError(b, err)
				b.StartTimer()
				res, err := be.RunUpgrades(ctx)
				require.NoError(b, err)
				require.Len(b, res, 2, "CountedUpgrade and HeadlessUpgrade")
				require.Zero(b, res[1].Rows, "rows moved")
			}
			b.ReportMetric(float64(msgs*b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
