package backend

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// Deleted means gone (issue 16, item 4): after DeleteUser, Clear, Expire or
// ReplaceSession, no byte of the erased text stays in the SQLite files.
//
// The erased session's text carries a marker: "qj" and 24 random hex
// digits, a word no other text of the test holds (no filler word starts
// with q), so it cannot appear by chance, and a word that the search index
// stores whole. FTS5 compresses a term against the one before it on its
// leaf page, so that only the suffix after their common prefix is stored;
// every term of the tenant shares the prefix "t<tenant hex>z" (see
// tenantTerms), and none of them shares the marker's first letter, so the
// stored suffix still holds the whole marker. It is in every column of a
// message that text goes to (content, name, tool-call arguments, parts,
// message and turn metadata), in the session's title and metadata where the
// call deletes the session, and in a message long enough to spill onto
// overflow pages.
//
// Each call is checked twice: "closed" (the memory and the DB closed: the
// .db, -wal and -shm files hold no marker) and "open" (after the call, the
// next checkpoint that completes leaves no marker in the .db file; the WAL
// may still hold old frames until it is truncated or overwritten). Before
// the call a checkpoint puts the marker in the .db file, so each case
// starts from a file that holds it.
func TestSQLiteErasureLeavesNoBytes(t *testing.T) {
	for _, op := range erasureOps {
		for _, closed := range []bool{true, false} {
			name := op.name + "/open"
			if closed {
				name = op.name + "/closed"
			}
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				path := filepath.Join(t.TempDir(), "erase.db")
				db, err := dataflow.Open(ctx, "sqlite:///"+path)
				require.NoError(t, err)
				t.Cleanup(func() { db.Close() })
				b, err := NewDataFlowBackend(db)
				require.NoError(t, err)
				m := newMemory(t, b).ForTenant("acme")
				marker := newMarker(t)
				cut := seedErasure(t, m, marker, op.keepsSession)
				// A summary of each erased session holds the marker too
				// (issue 20): it goes with the session.
				for _, id := range erasedSessions {
					require.NoError(t, b.PutSummary(ctx, driver.SessionKey("acme", id),
						driver.Summary{Text: "they said " + marker, Turns: 1, Tokens: 3, UpdatedAt: time.Now()}))
				}

				requireCheckpoint(t, db)
				require.Positive(t, markerCount(t, path, marker), "the marker reached the database file before the call")

				op.run(t, m, cut)
				requireGone(t, m, marker)

				if closed {
					require.NoError(t, m.Close())
					require.NoError(t, db.Close())
					for _, f := range []string{path, path + "-wal", path + "-shm"} {
						require.Zero(t, markerCount(t, f, marker), "%s holds the marker once closed", filepath.Base(f))
					}
					return
				}
				requireCheckpoint(t, db)
				require.Zero(t, markerCount(t, path, marker), "the database file holds the marker after a completed checkpoint")
				require.Positive(t, markerCount(t, path, fillerWords[0]), "the filler text stays")
			})
		}
	}
}

// erasureOps are the destructive calls of issue 16, item 4. The erased
// sessions are owned by "ada" and were last written before cut.
var erasureOps = []struct {
	name         string
	keepsSession bool // ReplaceSession keeps owner, title and metadata
	run          func(t *testing.T, m *memory.PersistentBufferMemory, cut time.Time)
}{
	{name: "DeleteUser", run: func(t *testing.T, m *memory.PersistentBufferMemory, _ time.Time) {
		r, err := m.DeleteUser(context.Background(), "ada")
		require.NoError(t, err)
		require.Equal(t, 2, r.Sessions)
	}},
	{name: "Clear", run: func(t *testing.T, m *memory.PersistentBufferMemory, _ time.Time) {
		for _, id := range erasedSessions {
			require.NoError(t, m.Clear(context.Background(), id))
		}
	}},
	{name: "Expire", run: func(t *testing.T, m *memory.PersistentBufferMemory, cut time.Time) {
		r, err := m.Expire(context.Background(), cut)
		require.NoError(t, err)
		require.Equal(t, 2, r.Sessions)
	}},
	{name: "ReplaceSession", keepsSession: true, run: func(t *testing.T, m *memory.PersistentBufferMemory, _ time.Time) {
		for _, id := range erasedSessions {
			require.NoError(t, m.ReplaceSession(context.Background(), id,
				driver.Turn{User: "a fresh start", Agent: "nothing kept"}))
		}
	}},
}

// erasedSessions hold the marker.
var erasedSessions = []string{"erased-1", "erased-2"}

// fillerWords make the text of the sessions that stay. None starts with
// q, the marker's first letter.
var fillerWords = strings.Fields("lantern harbour velvet orchard copper meadow saffron glacier " +
	"thimble cobalt juniper marble tundra willow ember falcon")

// newMarker returns "qj" and 24 random hex digits.
func newMarker(t *testing.T) string {
	t.Helper()
	var b [12]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return "qj" + hex.EncodeToString(b[:])
}

// seedErasure stores the erased sessions (owned by ada, holding marker)
// and then, after the returned cut, sessions of filler text that stay
// (owned by bob, in the same tenant, so that their terms share the search
// index's pages with the marker's).
func seedErasure(t *testing.T, m *memory.PersistentBufferMemory, marker string, keepsSession bool) time.Time {
	t.Helper()
	ctx := context.Background()
	filler := func(i, n int) string {
		var w []string
		for j := range n {
			w = append(w, fillerWords[(i*7+j*3)%len(fillerWords)])
		}
		return strings.Join(w, " ")
	}
	for i, id := range erasedSessions {
		info := driver.SessionInfo{ID: id, User: "ada"}
		if !keepsSession {
			info.Title = "about " + marker
			info.Metadata = map[string]any{"topic": marker}
		}
		require.NoError(t, m.CreateSession(ctx, info))
		require.NoError(t, m.SaveTurn(ctx, id, driver.Turn{
			User: "remember " + marker + " " + filler(i, 5), Agent: "noted " + marker,
			Metadata: map[string]any{"why": marker},
		}))
		require.NoError(t, m.SaveTurn(ctx, id, driver.Turn{Messages: []driver.Message{
			{Role: driver.RoleUser, Content: "look it up", Parts: []driver.Part{{Type: "text", Text: "part " + marker}}},
			{Role: driver.RoleAssistant, Name: "agent-" + marker, ToolCalls: []driver.ToolCall{{ID: "c1", Name: "lookup", Arguments: `{"q":"` + marker + `"}`}}},
			{Role: driver.RoleTool, ToolCallID: "c1", Content: "found " + marker, Metadata: map[string]any{"src": marker}},
		}}))
		// Long enough to need overflow pages (a 4 KiB page holds about
		// 4 KB of a row).
		long := strings.Repeat(filler(i, 40)+" "+marker+" ", 60)
		require.NoError(t, m.SaveTurn(ctx, id, driver.Turn{User: long, Agent: "ok"}))
	}
	time.Sleep(2 * time.Millisecond)
	cut := time.Now()
	time.Sleep(2 * time.Millisecond)
	for i := range 20 {
		id := fmt.Sprintf("kept-%d", i)
		require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: id, User: "bob"}))
		for j := range 3 {
			require.NoError(t, m.SaveTurn(ctx, id, driver.Turn{User: filler(i+j, 12), Agent: filler(i+j+1, 8)}))
		}
	}
	return cut
}

// requireGone checks that no API of m shows the marker any more.
func requireGone(t *testing.T, m *memory.PersistentBufferMemory, marker string) {
	t.Helper()
	hits, err := m.Search(context.Background(), driver.SearchQuery{Text: marker})
	require.NoError(t, err)
	require.Empty(t, hits, "search finds the erased text")
}

// requireCheckpoint runs a checkpoint and requires it to complete: every
// frame of the WAL copied into the database file, none pinned by a reader.
func requireCheckpoint(t *testing.T, db *dataflow.DB) {
	t.Helper()
	var busy, log, done int64
	// The DB's own checkpointer may be running one: SQLite then answers
	// busy at once, and the next try waits for it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rows, err := db.QueryContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
		require.NoError(t, err)
		require.NoError(t, scanOne(rows, &busy, &log, &done))
		if busy == 0 || time.Now().After(deadline) {
			break
		}
	}
	require.Zero(t, busy, "checkpoint stopped short: %d of %d frames copied", done, log)
	require.Equal(t, log, done, "checkpoint stopped short")
}

// markerCount counts the marker's raw bytes in the file at path; a file
// that does not exist holds none.
func markerCount(t *testing.T, path, marker string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	return bytes.Count(data, []byte(marker))
}

// After each destructive call no API shows the erased text, on any
// server: search (tenant-wide, by owner, by session), windows, history,
// session info, listing and export, read through the memory that made the
// call and through a second one on its own connection pool whose cache
// held the erased sessions' windows before the call. On every dialect
// (PostgreSQL when TURNKEEP_POSTGRES_URL is set).
func TestErasedTextNoAPIReturns(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		for _, op := range erasureOps {
			t.Run(op.name, func(t *testing.T) {
				url := d.URL(t)
				b, _ := newEnvURL(t, url)
				m := newMemory(t, b).ForTenant("acme")
				other, _ := newEnvURL(t, url)
				server2 := newMemory(t, other).ForTenant("acme")
				marker := newMarker(t)
				cut := seedErasure(t, m, marker, op.keepsSession)

				// Before: every API shows it, so the checks below can fail.
				require.Contains(t, apiText(t, server2, marker), marker)
				op.run(t, m, cut)
				for i, mem := range []*memory.PersistentBufferMemory{m, server2} {
					require.NotContains(t, apiText(t, mem, marker), marker, "server %d", i+1)
				}
			})
		}
	})
}

// newEnvURL opens url (a database another test helper may have opened
// already) and a backend on it.
func newEnvURL(t testing.TB, url string) (*DataFlowBackend, *recorder) {
	t.Helper()
	db, rec := openDB(t, url)
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	return b, rec
}

// apiText is everything m's read APIs return about the erased sessions and
// the marker, as text.
func apiText(t *testing.T, m *memory.PersistentBufferMemory, marker string) string {
	t.Helper()
	ctx := context.Background()
	var out strings.Builder
	show := func(what string, v any) { fmt.Fprintf(&out, "%s: %+v\n", what, v) }
	for _, q := range []driver.SearchQuery{
		{Text: marker}, {Text: marker, User: "ada"}, {Text: "remember " + marker},
		{Text: marker, SessionID: erasedSessions[0]}, {Text: "found " + marker, SessionID: erasedSessions[1]},
	} {
		hits, err := m.Search(ctx, q)
		require.NoError(t, err)
		show("search", hits)
	}
	for _, q := range []driver.SessionQuery{{}, {User: "ada"}, {Limit: driver.MaxListLimit}} {
		for {
			p, err := m.ListSessions(ctx, q)
			require.NoError(t, err)
			show("list", p.Sessions)
			if p.Next == "" {
				break
			}
			q.After = p.Next
		}
	}
	for _, id := range erasedSessions {
		w, err := m.LoadContext(ctx, id)
		require.NoError(t, err)
		show("window", w)
		info, err := m.SessionInfo(ctx, id)
		if err != nil {
			require.ErrorIs(t, err, driver.ErrSessionNotFound)
		}
		show("info", info)
		for _, newest := range []bool{false, true} {
			q := driver.HistoryQuery{NewestFirst: newest}
			for {
				p, err := m.History(ctx, id, q)
				require.NoError(t, err)
				show("history", p.Turns)
				if p.Next == "" {
					break
				}
				q.After = p.Next
			}
		}
		var buf bytes.Buffer
		if err := m.Export(ctx, id, &buf); err != nil {
			require.ErrorIs(t, err, driver.ErrSessionNotFound)
		}
		out.Write(buf.Bytes())
	}
	return out.String()
}

// A search table made by the previous release (without FTS5's
// secure-delete option) gets the option from the first process of this
// one that uses it, and erasure then leaves no byte in it either.
func TestSQLiteErasureOldSearchTable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	old, err := sql.Open(dataflow.SQLiteDriver, "file://"+path)
	require.NoError(t, err)
	_, err = old.ExecContext(ctx, `CREATE VIRTUAL TABLE `+SearchTable+
		` USING fts5(body, sk, tk, skey UNINDEXED, seq UNINDEXED, pos UNINDEXED, tokenize = 'unicode61 remove_diacritics 0')`)
	require.NoError(t, err)
	require.NoError(t, old.Close())

	db, err := dataflow.Open(ctx, "sqlite:///"+path)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	m := newMemory(t, b).ForTenant("acme")
	marker := newMarker(t)
	seedErasure(t, m, marker, false)
	rows, err := db.QueryContext(ctx, `SELECT v FROM `+SearchTable+`_config WHERE k = 'secure-delete'`)
	require.NoError(t, err)
	var on int
	require.NoError(t, scanOne(rows, &on), "the option is set")
	require.Equal(t, 1, on)

	requireCheckpoint(t, db)
	require.Positive(t, markerCount(t, path, marker))
	for _, id := range erasedSessions {
		require.NoError(t, m.Clear(ctx, id))
	}
	require.NoError(t, m.Close())
	require.NoError(t, db.Close())
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		require.Zero(t, markerCount(t, f, marker), "%s holds the marker once closed", filepath.Base(f))
	}
}

// A reader holding a snapshot from before the erasure delays it, as
// docs/erasure.md says: a checkpoint cannot copy the frames written after
// that snapshot (the reader may still need the pages they replace), so the
// database file keeps the text while the reader lasts; the first checkpoint
// that completes after it ends removes it.
func TestSQLiteErasureWaitsForOldReader(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "reader.db")
	db, err := dataflow.Open(ctx, "sqlite:///"+path)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	m := newMemory(t, b).ForTenant("acme")
	marker := newMarker(t)
	seedErasure(t, m, marker, false)
	requireCheckpoint(t, db)

	reader, err := sql.Open(dataflow.SQLiteDriver, "file://"+path)
	require.NoError(t, err)
	t.Cleanup(func() { reader.Close() })
	tx, err := reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	require.NoError(t, err)
	var n int
	require.NoError(t, tx.QueryRowContext(ctx, `SELECT count(*) FROM `+MessagesTable).Scan(&n)) // its snapshot starts
	require.Positive(t, n)

	for _, id := range erasedSessions {
		require.NoError(t, m.Clear(ctx, id))
	}
	var busy, log, done int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rows, err := db.QueryContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
		require.NoError(t, err)
		require.NoError(t, scanOne(rows, &busy, &log, &done))
		if busy == 0 || time.Now().After(deadline) {
			break
		}
	}
	require.Less(t, done, log, "the reader's snapshot pins the frames of the erasure")
	require.Positive(t, markerCount(t, path, marker), "the database file keeps the text while the reader lasts")

	require.NoError(t, tx.Rollback())
	requireCheckpoint(t, db)
	require.Zero(t, markerCount(t, path, marker), "the text is gone after the first checkpoint that completes")
}
