package tests

// Sessions at scale (issue 10): search against a LIKE scan of the same
// messages, and DeleteUser of many sessions. A small size always runs; the
// large one (1,000,000 messages; 10,000 sessions deleted) is opt-in:
//
//	TURNKEEP_SCALE=1 go test ./tests -run 'TestSessionsScale' -v -timeout 60m
//
// with TURNKEEP_POSTGRES_URL set to run it on PostgreSQL too.

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// sessTenant is the tenant every loaded session belongs to.
const sessTenant = "acme"

// sessDB is a fresh database with the backend's schema and search index,
// a cache-less memory of sessTenant over it, and a second handle that
// bulk-inserts the backend's rows.
type sessDB struct {
	dialect  string
	url      string
	db       *dataflow.DB
	be       *backend.DataFlowBackend
	mem      *memory.PersistentBufferMemory
	loader   *dataflow.DB
	sessions *dataflow.Table[backend.SessionRow]
	messages *dataflow.Table[backend.MessageRow]
}

// sessOpen makes a sessDB on a fresh database of dialect d: the backend
// creates its tables (one save, then cleared) and its search index (one
// search), as a new deployment has them before its first message.
func sessOpen(tb testing.TB, d dbtest.Dialect) *sessDB {
	tb.Helper()
	ctx := context.Background()
	s := &sessDB{dialect: d.Name, url: d.URL(tb)}
	var err error
	if s.db, err = dataflow.Open(ctx, s.url); err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { s.db.Close() })
	if s.be, err = backend.NewDataFlowBackend(s.db); err != nil {
		tb.Fatalf("backend: %v", err)
	}
	root, err := memory.NewPersistentBufferMemory(s.be, memory.WithCacheTTL(0))
	if err != nil {
		tb.Fatalf("memory: %v", err)
	}
	s.mem = root.ForTenant(sessTenant)
	const boot = "sessions-bootstrap"
	if err := s.mem.SaveTurn(ctx, boot, memory.Turn{User: "create", Agent: "tables"}); err != nil {
		tb.Fatalf("bootstrap save: %v", err)
	}
	if err := s.mem.Clear(ctx, boot); err != nil {
		tb.Fatalf("bootstrap clear: %v", err)
	}
	// The first search creates the search index, before the load: on
	// PostgreSQL building it over 1,000,000 loaded messages outlasts the
	// backend's 30 s bound on creating it (see the report of issue 10).
	if _, err := s.mem.Search(ctx, memory.SearchQuery{Text: "bootstrap"}); err != nil {
		tb.Fatalf("bootstrap search: %v", err)
	}
	if s.loader, err = dataflow.Open(ctx, s.url, dataflow.WithExistingSchemaMode(true)); err != nil {
		tb.Fatalf("open loader: %v", err)
	}
	tb.Cleanup(func() { s.loader.Close() })
	if s.sessions, err = dataflow.Register[backend.SessionRow](s.loader); err != nil {
		tb.Fatalf("register sessions: %v", err)
	}
	if s.messages, err = dataflow.Register[backend.MessageRow](s.loader); err != nil {
		tb.Fatalf("register messages: %v", err)
	}
	return s
}

func sessID(i int) string { return fmt.Sprintf("s-%07d", i) }

// sessUpdated is session i's update time: distinct for every i (a
// multiplication by an odd number is a bijection modulo 2^32), whole
// microseconds, and not in the order the sessions were written.
func sessUpdated(i int) time.Time {
	return scaleEpoch.Add(time.Duration(uint32(i)*2654435761) * time.Microsecond)
}

// A sessLoad is a run of sessions to bulk-insert.
type sessLoad struct {
	first, count int
	owner        func(i int) string // the owner of session i
	turns        int                // turns per session, of two messages each
	text         func(s int, seq int64, pos int32) string
}

// load bulk-inserts the sessions of l with their messages, shaped as
// saves leave them (IDs, token counts, counted), and their search entries:
// on PostgreSQL and MySQL the messages' search_text, on SQLite rows of the FTS5
// table as backend/search.go's indexTx writes them. Search must find them
// exactly as saved ones; sessionsSearch checks that it does.
func (s *sessDB) load(tb testing.TB, l sessLoad) time.Duration {
	tb.Helper()
	ctx := context.Background()
	rowText := s.dialect != "sqlite" // the rows carry their search text
	start := time.Now()
	group := max(1, min(1_000, 20_000/max(1, 2*l.turns)))
	for first := l.first; first < l.first+l.count; first += group {
		n := min(group, l.first+l.count-first)
		srows := make([]backend.SessionRow, 0, n)
		mrows := make([]backend.MessageRow, 0, n*l.turns*2)
		var fts []any
		for i := first; i < first+n; i++ {
			key := driver.SessionKey(sessTenant, sessID(i))
			var tokens int64
			for seq := int64(1); seq <= int64(l.turns); seq++ {
				mrows, fts, tokens = appendScaleTurn(mrows, fts, key, scaleTurnID(i, seq), seq, tokens,
					scaleEpoch.Add(time.Duration(seq)*time.Minute), rowText, func(pos int32) string { return l.text(i, seq, pos) })
			}
			srows = append(srows, backend.SessionRow{ID: key, Tenant: sessTenant, UserID: l.owner(i),
				Title: "chat " + sessID(i), TurnCount: int64(l.turns), Version: 1, Tokens: tokens, Counted: 1,
				CreatedAt: scaleEpoch, UpdatedAt: sessUpdated(i)})
		}
		err := s.loader.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			if err := s.sessions.WithTx(tx).BulkCreate(ctx, srows); err != nil {
				return err
			}
			return s.writeScaleMessages(ctx, tx, mrows, fts)
		})
		if err != nil {
			tb.Fatalf("load sessions %d..%d: %v", first, first+n-1, err)
		}
	}
	return time.Since(start)
}

// appendScaleTurn appends turn seq (ID tid) of session key to mrows, as
// saves leave it: a user and an assistant message, texts from text by
// position, stamped at, with their derived IDs, token counts and running
// total (tokens before the turn; it returns the total after). Their
// search entries go to fts on SQLite, or into the rows' search text
// (rowText) on the other engines.
func appendScaleTurn(mrows []backend.MessageRow, fts []any, key, tid string, seq, tokens int64, at time.Time,
	rowText bool, text func(pos int32) string) ([]backend.MessageRow, []any, int64) {
	before := tokens
	for pos, role := range []memory.Role{memory.RoleUser, memory.RoleAssistant} {
		content := text(int32(pos))
		tok := int64(len(content)/4 + 1)
		tokens += tok
		row := backend.MessageRow{SessionID: key, Seq: seq, Pos: int32(pos), TurnID: tid,
			MsgID: sql.NullString{String: driver.DerivedMessageID(tid, pos), Valid: true},
			Role:  string(role), Content: content, Tokens: tok, TokensBefore: before, CreatedAt: at}
		if rowText {
			if st := driver.SearchText(content); st != "" {
				row.SearchText = sql.NullString{String: st, Valid: true}
			}
		} else if entry, ok := backend.SearchEntry(key, seq, int32(pos), content); ok {
			fts = append(fts, entry...)
		}
		mrows = append(mrows, row)
	}
	return mrows, fts, tokens
}

// writeScaleMessages writes mrows and, on SQLite, their search entries fts
// in tx; the entries being written, nothing is left for the index to
// catch up (the trigger queued the rows), so the tenant's queue is
// emptied.
func (s *sessDB) writeScaleMessages(ctx context.Context, tx *dataflow.Tx, mrows []backend.MessageRow, fts []any) error {
	if err := s.messages.WithTx(tx).BulkCreate(ctx, mrows); err != nil {
		return err
	}
	const per = 1_000 // FTS rows per statement: 6,000 parameters
	for len(fts) > 0 {
		k := min(len(fts), per*6)
		q := `INSERT INTO ` + backend.SearchTable + ` (body, sk, tk, skey, seq, pos) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", k/6), ", ")
		if _, err := tx.ExecContext(ctx, q, fts[:k]...); err != nil {
			return err
		}
		fts = fts[k:]
	}
	if s.dialect != "sqlite" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM `+backend.SearchQueueTable+` WHERE tenant = ?`, sessTenant)
	return err
}

// maintain gives the tables what a maintained database has after a bulk
// load: statistics, a vacuum on PostgreSQL (which also empties the search
// index's pending list), a checkpointed WAL on SQLite.
func (s *sessDB) maintain(tb testing.TB) time.Duration {
	tb.Helper()
	ctx := context.Background()
	start := time.Now()
	for _, q := range scaleMaintenance(s.dialect) {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	if s.dialect == "sqlite" {
		if _, err := s.db.ExecContext(ctx, `ANALYZE `+backend.SearchTable); err != nil {
			tb.Fatalf("analyze search: %v", err)
		}
	}
	return time.Since(start)
}

// count returns the single integer query q selects.
func (s *sessDB) count(tb testing.TB, q string, args ...any) int {
	tb.Helper()
	ctx := context.Background()
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(q), args...)
	var n int
	if err == nil {
		err = s.db.ScanRows(ctx, rows, &n)
	}
	if err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
	return n
}

func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// The search sizes: sessions of sessSearchTurns turns (2 messages each).
// The rare word is in sessSearchHits messages, spread evenly over the
// sessions, the last near the end of the table, so that a LIKE scan that
// stops at 20 rows reads nearly all of it.
const (
	sessSearchTurns = 50
	sessSearchHits  = 20
	sessRareWord    = "zephyrine"
	sessCommonWord  = "memory" // one of scaleWords: in about half the messages

	sessSmallSearchSessions = 200    // 20,000 messages, always
	sessRaceSearchSessions  = 20     // of 10 turns, 400 messages, under -race
	sessLargeSearchSessions = 10_000 // 1,000,000 messages, with TURNKEEP_SCALE=1

	sessSmallMaxRatio = 0.5  // search median / LIKE median at 20,000 messages
	sessLargeMaxRatio = 0.01 // at 1,000,000 messages (issue 10)
	// sessMySQLMaxRatio is MySQL's, at any size: its search has no index
	// (InnoDB's FULLTEXT cannot find CJK on MariaDB, which has no ngram
	// parser) but matches words with LIKE over the tenant's rows (backend
	// mysqlStore.searchStmt), a scan of the scope by design, so it costs
	// about what a LIKE scan does (1.6 measured at 20,000 messages). The
	// bound catches a search worse than a scan; an indexed search on
	// MySQL (a term table) is open.
	sessMySQLMaxRatio = 3
)

// raceEnabled reports whether the test binary was built with -race. The
// race detector slows the pure-Go SQLite driver some hundredfold, so under
// it the timed tests run small and check what they find, not what it costs.
var raceEnabled = func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}()

// TestSessionsScaleSearch compares Search for a rare word with a LIKE
// '%word%' scan finding the same 20 messages, in the same run, on the
// same database: at 20,000 messages search must cost at most half the
// scan, at 1,000,000 (TURNKEEP_SCALE=1) at most 1/100.
func TestSessionsScaleSearch(t *testing.T) {
	type size struct{ sessions, turns int }
	sizes := []size{{sessSmallSearchSessions, sessSearchTurns}}
	if raceEnabled {
		sizes = []size{{sessRaceSearchSessions, 10}}
	}
	if os.Getenv(scaleEnv) == "1" {
		sizes = append(sizes, size{sessLargeSearchSessions, sessSearchTurns})
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		for _, z := range sizes {
			t.Run(fmt.Sprintf("%d-messages", z.sessions*z.turns*2), func(t *testing.T) {
				sessionsSearch(t, d, z.sessions, z.turns)
			})
		}
	})
}

func sessionsSearch(t *testing.T, d dbtest.Dialect, sessions, turns int) {
	ctx := context.Background()
	s := sessOpen(t, d)
	stride := sessions / sessSearchHits
	rare := func(i int, seq int64, pos int32) bool {
		return i%stride == stride/2 && seq == int64(turns/2) && pos == 1
	}
	loaded := s.load(t, sessLoad{count: sessions, turns: turns,
		owner: listOwner,
		text: func(i int, seq int64, pos int32) string {
			text := scaleText(i, seq, pos, map[int32]int{0: 120, 1: 400}[pos])
			if rare(i, seq, pos) {
				text += " " + sessRareWord + "."
			}
			return text
		}})
	maintained := s.maintain(t)
	messages := sessions * turns * 2
	if got := s.count(t, `SELECT COUNT(*) FROM `+backend.MessagesTable); got != messages {
		t.Fatalf("%d messages stored, want %d", got, messages)
	}
	t.Logf("%s: loaded %d sessions, %d messages with their search entries in %v (%.0f messages/s); maintenance %v; size %s",
		d.Name, sessions, messages, loaded.Round(time.Millisecond), float64(messages)/loaded.Seconds(),
		maintained.Round(time.Millisecond), scaleSize(ctx, s.db, s.url))

	// The LIKE scan: the same messages, by content.
	like := s.db.Rebind(`SELECT session_id, turn_id, content FROM ` + backend.MessagesTable + ` WHERE content LIKE ? LIMIT 20`)
	pattern := "%" + sessRareWord + "%" // plain LIKE: on PostgreSQL faster than ILIKE
	scan := func() (map[string]bool, time.Duration) {
		start := time.Now()
		rows, err := s.db.QueryContext(ctx, like, pattern)
		if err != nil {
			t.Fatalf("like: %v", err)
		}
		found := map[string]bool{}
		for rows.Next() {
			var key, turn, content string
			if err := rows.Scan(&key, &turn, &content); err != nil {
				t.Fatalf("like: %v", err)
			}
			_, id := driver.ParseSessionKey(key)
			found[id+"/"+turn] = true
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("like: %v", err)
		}
		rows.Close()
		return found, time.Since(start)
	}
	search := func(word string, want int) (map[string]bool, time.Duration) {
		start := time.Now()
		hits, err := s.mem.Search(ctx, memory.SearchQuery{Text: word, Limit: 20})
		d := time.Since(start)
		if err != nil {
			t.Fatalf("search %q: %v", word, err)
		}
		if len(hits) != want {
			t.Fatalf("search %q: %d hits, want %d", word, len(hits), want)
		}
		found := map[string]bool{}
		for _, h := range hits {
			found[h.SessionID+"/"+h.TurnID] = true
		}
		return found, d
	}

	// Both find the same 20 messages.
	byLike, _ := scan()
	bySearch, _ := search(sessRareWord, sessSearchHits)
	if len(byLike) != sessSearchHits || !mapsEqual(byLike, bySearch) {
		t.Fatalf("LIKE found %d messages, search %d; they differ: %v vs %v", len(byLike), len(bySearch), byLike, bySearch)
	}

	// Interleaved samples: a scan, then searches, so that drift falls on
	// both alike.
	scans, searches := 7, 15
	switch {
	case raceEnabled:
		scans, searches = 3, 5
	case messages >= 1_000_000:
		scans = 5
	}
	var ds, dl []time.Duration
	for i := range scans {
		_, d := scan()
		dl = append(dl, d)
		for range searches {
			_, d := search(sessRareWord, sessSearchHits)
			if i > 0 { // the first round warms the search's pages
				ds = append(ds, d)
			}
		}
	}
	ms, ml := median(ds), median(dl)
	ratio := float64(ms) / float64(ml)
	limit := sessSmallMaxRatio
	if messages >= 1_000_000 {
		limit = sessLargeMaxRatio
	}
	if d.Name == "mysql" {
		limit = sessMySQLMaxRatio
	}
	// A common word, for the record: every match is ranked before the
	// best 20 are returned.
	_, common := search(sessCommonWord, 20)
	t.Logf("%s, %d messages: search %q (20 hits) median %v over %d; LIKE '%%%s%%' LIMIT 20 median %v over %d; ratio %.4f (limit %.3f); a common word (%q) %v",
		d.Name, messages, sessRareWord, ms, len(ds), sessRareWord, ml, len(dl), ratio, limit, sessCommonWord, common)
	switch {
	case raceEnabled:
		t.Logf("the ratio is not checked under -race: a few hundred messages, timed under the race detector, measure neither")
	case ratio > limit:
		t.Errorf("search at %d messages costs %.4f of a LIKE scan (%v vs %v), want at most %.3f", messages, ratio, ms, ml, limit)
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// listOwner is the owner of listed session i: ten owners in turn.
func listOwner(i int) string { return fmt.Sprintf("user-%d", i%10) }

// The DeleteUser sizes: the user's sessions, of sessDeleteTurns turns, among
// a quarter as many of other owners.
const (
	sessDeleteTurns         = 5
	sessSmallDeleteSessions = 300
	sessRaceDeleteSessions  = 30     // under -race
	sessLargeDeleteSessions = 10_000 // with TURNKEEP_SCALE=1
	sessLeaver              = "leaver"
)

// TestSessionsScaleDeleteUser times DeleteUser of a user's sessions, with
// their messages and search entries, and checks that exactly they are
// gone: 300 sessions always, 10,000 with TURNKEEP_SCALE=1.
func TestSessionsScaleDeleteUser(t *testing.T) {
	sizes := []int{sessSmallDeleteSessions}
	if raceEnabled {
		sizes = []int{sessRaceDeleteSessions}
	}
	if os.Getenv(scaleEnv) == "1" {
		sizes = append(sizes, sessLargeDeleteSessions)
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%d-sessions", n), func(t *testing.T) {
				sessionsDeleteUser(t, d, n)
			})
		}
	})
}

func sessionsDeleteUser(t *testing.T, d dbtest.Dialect, n int) {
	ctx := context.Background()
	s := sessOpen(t, d)
	others := n / 4
	// Sessions 0..n-1 are the leaver's, n.. the others'; every message
	// holds "kept" or "gone" by owner, to check the search entries.
	owner := func(i int) string {
		if i < n {
			return sessLeaver
		}
		return listOwner(i)
	}
	text := func(i int, seq int64, pos int32) string {
		word := "kept"
		if i < n {
			word = "gone"
		}
		return scaleText(i, seq, pos, 200) + " " + word
	}
	loaded := s.load(t, sessLoad{count: n + others, turns: sessDeleteTurns, owner: owner, text: text})
	s.maintain(t)
	t.Logf("%s: loaded %d sessions of %q and %d of others, %d messages each, in %v",
		d.Name, n, sessLeaver, others, 2*sessDeleteTurns, loaded.Round(time.Millisecond))
	if hits, err := s.mem.Search(ctx, memory.SearchQuery{Text: "gone", User: sessLeaver, Limit: 1}); err != nil || len(hits) != 1 {
		t.Fatalf("search before: %d hits, %v; want 1", len(hits), err)
	}

	start := time.Now()
	r, err := s.mem.DeleteUser(ctx, sessLeaver)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("delete user: %v", err)
	}
	want := memory.DeleteReport{Sessions: n, Messages: n * sessDeleteTurns * 2}
	if r != want {
		t.Errorf("delete user: report %+v; want %+v", r, want)
	}
	t.Logf("%s: DeleteUser of %d sessions (%d messages) in batches of %d: %v; %.0f sessions/s, %.0f messages/s",
		d.Name, r.Sessions, r.Messages, driver.DeleteBatch, took.Round(time.Millisecond),
		float64(r.Sessions)/took.Seconds(), float64(r.Messages)/took.Seconds())

	// Exactly the user's sessions are gone, with their messages and search
	// entries; the others are whole.
	if got := s.count(t, `SELECT COUNT(*) FROM `+backend.SessionsTable+` WHERE tenant = ?`, sessTenant); got != others {
		t.Errorf("%d sessions left; want %d", got, others)
	}
	if got := s.count(t, `SELECT COUNT(*) FROM `+backend.MessagesTable); got != others*sessDeleteTurns*2 {
		t.Errorf("%d messages left; want %d", got, others*sessDeleteTurns*2)
	}
	if s.dialect == "sqlite" {
		if got := s.count(t, `SELECT COUNT(*) FROM `+backend.SearchTable); got != others*sessDeleteTurns*2 {
			t.Errorf("%d search entries left; want %d", got, others*sessDeleteTurns*2)
		}
	}
	if hits, err := s.mem.Search(ctx, memory.SearchQuery{Text: "gone"}); err != nil || len(hits) != 0 {
		t.Errorf("search after: %d hits, %v; want none", len(hits), err)
	}
	if hits, err := s.mem.Search(ctx, memory.SearchQuery{Text: "kept", Limit: memory.MaxListLimit}); err != nil || len(hits) != min(memory.MaxListLimit, others*sessDeleteTurns*2) {
		t.Errorf("search of the others: %d hits, %v; want %d", len(hits), err, min(memory.MaxListLimit, others*sessDeleteTurns*2))
	}
}
