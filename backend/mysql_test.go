package backend

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// requests counts the requests MySQL connections of this test binary
// send: a write that follows a read (or is a connection's first) starts
// one; one request is one round trip, however many statements its text
// holds.
var requests struct {
	sync.Mutex
	n int
}

type countingConn struct {
	net.Conn
	mu   sync.Mutex // protects read
	read bool       // the last I/O was a read
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.read = true
	c.mu.Unlock()
	return c.Conn.Read(p)
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.read {
		c.read = false
		requests.Lock()
		requests.n++
		requests.Unlock()
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func roundTrips() int {
	requests.Lock()
	defer requests.Unlock()
	return requests.n
}

func init() {
	mysql.RegisterDialContext("tcp", func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c}, nil
	})
}

// newMySQLBackend opens a backend on a private database of the
// TURNKEEP_MYSQL_URL server (skipped without it), its pool one
// connection.
func newMySQLBackend(t *testing.T) *DataFlowBackend {
	t.Helper()
	db, err := dataflow.Open(context.Background(), dbtest.MySQLURL(t), dataflow.WithMaxOpenConns(1))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	return b
}

// The conversation basics on MariaDB: save (one round trip), duplicate
// save (nothing stored), turn and token windows (one round trip), clear,
// search with CJK and quotes, and the round trips counted on the wire.
func TestMySQLSaveAndLoad(t *testing.T) {
	b := newMySQLBackend(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := driver.SessionKey("acme", "s1")
	turns := []driver.Turn{
		{ID: "t1", User: "hello there", Agent: "hi", Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)},
		{ID: "t2", User: "東京の天気は", Agent: "晴れです", Timestamp: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)},
		{ID: "t3'--", User: `'); DROP TABLE turnkeep_messages; -- 100%_sure \ ok`, Agent: "done", Metadata: map[string]any{"q": `it's "x"`},
			Timestamp: time.Date(2026, 1, 2, 3, 4, 7, 0, time.UTC)},
	}
	// Warm up: the tables are made on first use.
	require.NoError(t, storeTurn(ctx, b, driver.SessionKey("acme", "warm"), driver.Turn{ID: "w", User: "u", Agent: "a", Timestamp: time.Now()}))
	_, _, err := b.Load(ctx, driver.SessionKey("acme", "warm"), driver.WindowQuery{MaxTurns: 1, Known: driver.UnknownVersion})
	require.NoError(t, err)

	for i, turn := range turns {
		before := roundTrips()
		saved, err := b.Save(ctx, key, driver.PreparedTurn{Turn: turn})
		require.NoError(t, err)
		got := roundTrips() - before
		assert.True(t, saved.Stored)
		assert.Equal(t, i+1, saved.Seq)
		assert.LessOrEqual(t, got, 2, "save %d: round trips", i)
		assert.Equal(t, 1, got, "save %d: round trips", i)
		t.Logf("save %d (%d messages): %d round trip(s)", i, 2, got)
	}

	// A held turn ID stores nothing.
	saved, err := b.Save(ctx, key, driver.PreparedTurn{Turn: turns[0]})
	require.NoError(t, err)
	assert.False(t, saved.Stored)

	before := roundTrips()
	w, v, err := b.Load(ctx, key, driver.WindowQuery{MaxTurns: 2, Known: driver.UnknownVersion})
	require.NoError(t, err)
	loadTrips := roundTrips() - before
	assert.Equal(t, 1, loadTrips, "load: round trips")
	t.Logf("load: %d round trip(s)", loadTrips)
	require.Len(t, w.Turns, 2)
	assert.Equal(t, 3, w.TurnCount)
	assert.Equal(t, "t2", w.Turns[0].ID)
	assert.Equal(t, "東京の天気は", w.Turns[0].User)
	assert.Equal(t, turns[2].User, w.Turns[1].User)
	assert.Equal(t, turns[2].Metadata, w.Turns[1].Metadata)
	assert.True(t, w.Turns[1].Timestamp.Equal(turns[2].Timestamp))

	// The known version: nothing read.
	w2, v2, err := b.Load(ctx, key, driver.WindowQuery{MaxTurns: 2, Known: v})
	require.NoError(t, err)
	assert.Equal(t, v, v2)
	assert.Empty(t, w2.Turns)

	// A token budget of the newest turn alone.
	wb, _, err := b.Load(ctx, key, driver.WindowQuery{MaxTurns: 10, TokenBudget: 1, Known: driver.UnknownVersion})
	require.NoError(t, err)
	require.Len(t, wb.Turns, 1, "the newest turn, even over budget")
	assert.Equal(t, "t3'--", wb.Turns[0].ID)

	for _, tc := range []struct {
		text string
		want []string // turn IDs
	}{
		{"hello", []string{"t1"}},
		{"東京", []string{"t2"}},
		{"100%_sure", []string{"t3'--"}}, // the words 100 and sure
		{"hell", nil},                    // whole words only
		{"hello hi", nil},                // every term in one message
		{"drop table", []string{"t3'--"}},
	} {
		hits, err := b.Search(ctx, "acme", driver.SearchQuery{Text: tc.text, Limit: 20})
		require.NoError(t, err, tc.text)
		var got []string
		for _, h := range hits {
			got = append(got, h.TurnID)
		}
		assert.Equal(t, tc.want, got, "search %q", tc.text)
	}
	other, err := b.Search(ctx, "other", driver.SearchQuery{Text: "hello", Limit: 20})
	require.NoError(t, err)
	assert.Empty(t, other, "another tenant's search")

	require.NoError(t, b.ClearSession(ctx, key))
	w, _, err = b.Load(ctx, key, driver.WindowQuery{MaxTurns: 10, Known: driver.UnknownVersion})
	require.NoError(t, err)
	assert.Empty(t, w.Turns)
	assert.Zero(t, w.TurnCount)
	hits, err := b.Search(ctx, "acme", driver.SearchQuery{Text: "東京", Limit: 20})
	require.NoError(t, err)
	assert.Empty(t, hits, "cleared text is not found")
}
