package backend

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

func TestDataFlowBackendRoundTrip(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	newYork := time.FixedZone("EST", -5*3600)
	tests := []struct {
		name string
		turn driver.Turn
	}{
		{"plain", driver.Turn{ID: "plain", User: "Hello", Agent: "Hi there",
			Timestamp: time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC)}},
		{"nanoseconds truncated", driver.Turn{ID: "nanos", User: "u", Agent: "a",
			Timestamp: time.Date(2025, 1, 2, 3, 4, 5, 999999999, time.UTC)}},
		{"non-UTC comes back UTC", driver.Turn{ID: "tokyo", User: "こんにちは", Agent: "やあ",
			Timestamp: time.Date(2024, 2, 29, 8, 0, 0, 1000, tokyo)}},
		{"negative offset across midnight", driver.Turn{ID: "ny", User: "u", Agent: "a",
			Timestamp: time.Date(2023, 12, 31, 22, 30, 0, 500000, newYork)}},
		{"before 1970", driver.Turn{ID: "old", User: "u", Agent: "a",
			Timestamp: time.Date(1969, 7, 20, 20, 17, 40, 654321000, time.UTC)}},
		{"far future", driver.Turn{ID: "future", User: "u", Agent: "a",
			Timestamp: time.Date(2999, 12, 31, 23, 59, 59, 999999000, time.UTC)}},
		{"quotes and SQL injection", driver.Turn{ID: "inject'--", User: `'); DROP TABLE turnkeep_messages; --`,
			Agent:     `Robert"); DELETE FROM turnkeep_sessions WHERE '1'='1`,
			Metadata:  map[string]any{"q": `it's "quoted" \ back\slash`, "sql": "' OR 1=1 --", "?": "$1 ?"},
			Timestamp: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}},
		{"emoji and multi-line", driver.Turn{ID: "emoji", User: "line 1\nline 2\r\n\ttabbed 😀👩‍👩‍👧",
			Agent:     "Ünïcödé \u2028 \u2029 \ufffd 𝄞",
			Metadata:  map[string]any{"emoji": "🎉", "lines": "a\nb\nc", "<html>": "<a&b>"},
			Timestamp: time.Date(2025, 6, 1, 0, 0, 1, 0, time.UTC)}},
		{"nested metadata and numbers", driver.Turn{ID: "nested", User: "u", Agent: "a",
			Metadata: map[string]any{
				"int":   42,
				"neg":   int64(-7),
				"big":   int64(1) << 53,
				"float": 3.25,
				"tiny":  math.SmallestNonzeroFloat64,
				"bool":  true,
				"null":  nil,
				"list":  []any{1, "two", []int{3}, map[string]any{"four": 4}},
				"deep":  map[string]any{"a": map[string]any{"b": map[string]any{"c": []string{"d"}}}},
				"empty": map[string]any{},
			},
			Timestamp: time.Date(2025, 6, 1, 0, 0, 2, 0, time.UTC)}},
		{"first storable year", driver.Turn{ID: "y1", User: "u", Agent: "a",
			Timestamp: time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)}},
		{"last storable microsecond", driver.Turn{ID: "y9999", User: "u", Agent: "a",
			Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
		{"128-byte multi-byte turn ID", driver.Turn{ID: strings.Repeat("é", 64), User: "u", Agent: "a",
			Timestamp: time.Date(2025, 6, 1, 0, 0, 7, 0, time.UTC)}},
		{"only user", driver.Turn{ID: "only-user", User: "just me",
			Timestamp: time.Date(2025, 6, 1, 0, 0, 3, 0, time.UTC)}},
		{"only agent", driver.Turn{ID: "only-agent", Agent: "unprompted",
			Timestamp: time.Date(2025, 6, 1, 0, 0, 4, 0, time.UTC)}},
		{"whitespace messages", driver.Turn{ID: "ws", User: " ", Agent: "\n",
			Timestamp: time.Date(2025, 6, 1, 0, 0, 5, 0, time.UTC)}},
		{"long messages", driver.Turn{ID: "long", User: strings.Repeat("x", 100_000), Agent: strings.Repeat("é", 50_000),
			Timestamp: time.Date(2025, 6, 1, 0, 0, 6, 0, time.UTC)}},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				sid := "rt-" + tt.name
				want := prepared(t, tt.turn)
				require.NoError(t, storeTurn(ctx, b, sid, tt.turn))
				w := loadWindow(t, b, sid, 10)
				require.Equal(t, wantWindow([]driver.Turn{want}, 1), w)
				assert.Same(t, time.UTC, w.Turns[0].Timestamp.Location(), "timestamp location")
				assert.True(t, w.Turns[0].Timestamp.Equal(tt.turn.Timestamp.Truncate(time.Microsecond)),
					"got %v; want the same instant as %v", w.Turns[0].Timestamp, tt.turn.Timestamp)
			})
		}

		t.Run("all in one session", func(t *testing.T) {
			var want []driver.Turn
			for _, tt := range tests {
				require.NoError(t, storeTurn(ctx, b, "rt-all", tt.turn))
				want = append(want, prepared(t, tt.turn))
			}
			require.Equal(t, wantWindow(want, len(tests)), loadWindow(t, b, "rt-all", 100))
		})

		t.Run("generated ID and timestamp", func(t *testing.T) {
			before := time.Now().UTC().Truncate(time.Microsecond)
			require.NoError(t, storeTurn(ctx, b, "rt-generated", driver.Turn{User: "u", Agent: "a"}))
			after := time.Now().UTC()
			w := loadWindow(t, b, "rt-generated", 10)
			require.Len(t, w.Turns, 1)
			got := w.Turns[0]
			assert.Regexp(t, `^[0-9a-f]{32}$`, got.ID)
			assert.Same(t, time.UTC, got.Timestamp.Location())
			assert.False(t, got.Timestamp.Before(before) || got.Timestamp.After(after),
				"got %v; want within [%v, %v]", got.Timestamp, before, after)
			assert.Equal(t, got.Timestamp, got.Timestamp.Truncate(time.Microsecond), "sub-microsecond digits")
		})
	})
}

func TestDataFlowBackendWindow(t *testing.T) {
	const saved = 25
	at := time.Date(2025, 5, 5, 5, 5, 5, 0, time.UTC)
	tests := []struct {
		name      string
		sessionID string
		maxTurns  int
		wantFirst int // index of the first turn returned
		wantLen   int
		wantCount int
	}{
		{"window 10 of 25", "s", 10, 15, 10, saved},
		{"window 1", "s", 1, 24, 1, saved},
		{"window 24", "s", 24, 1, 24, saved},
		{"window equals count", "s", 25, 0, 25, saved},
		{"window larger than count", "s", 100, 0, 25, saved},
		{"largest window", "s", math.MaxInt, 0, 25, saved},
		{"unknown session", "nobody", 10, 0, 0, 0},
		{"other session untouched", "other", 10, 0, 1, 1},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		var all []driver.Turn
		for i := range saved {
			// Every turn has the same timestamp: only the sequence orders them.
			turn := driver.Turn{ID: fmt.Sprint("t", i), User: fmt.Sprint("u", i), Agent: fmt.Sprint("a", i),
				Timestamp: at, Metadata: map[string]any{"i": i}}
			require.NoError(t, storeTurn(ctx, b, "s", turn))
			all = append(all, prepared(t, turn))
		}
		other := driver.Turn{ID: "o", User: "other", Timestamp: at}
		require.NoError(t, storeTurn(ctx, b, "other", other))

		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				w := loadWindow(t, b, tt.sessionID, tt.maxTurns)
				assert.Equal(t, tt.wantCount, w.TurnCount)
				require.Len(t, w.Turns, tt.wantLen)
				switch tt.sessionID {
				case "s":
					assert.Equal(t, withSeq(all[tt.wantFirst:tt.wantFirst+tt.wantLen], tt.wantFirst+1), w.Turns)
				case "other":
					assert.Equal(t, withSeq([]driver.Turn{prepared(t, other)}, 1), w.Turns)
				default:
					assert.Equal(t, driver.Window{}, w, "an unknown session is the zero Window")
				}
			})
		}

		t.Run("invalid maxTurns", func(t *testing.T) {
			for _, n := range []int{0, -1, math.MinInt} {
				_, err := readWindow(ctx, b, "s", n)
				assert.ErrorIs(t, err, driver.ErrInvalidOption, "maxTurns %d", n)
			}
		})
		t.Run("invalid session ID", func(t *testing.T) {
			for _, id := range []string{"", strings.Repeat("s", 256), "\xff", "a\x00b"} {
				_, err := readWindow(ctx, b, id, 10)
				assert.ErrorIs(t, err, driver.ErrInvalidSessionID, "session %q", id)
			}
		})
	})
}

func TestDataFlowBackendIdempotent(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		first := driver.Turn{ID: "dup", User: "first", Agent: "a", Metadata: map[string]any{"n": 1}}

		t.Run("backend", func(t *testing.T) {
			require.NoError(t, storeTurn(ctx, b, "s", first))
			require.NoError(t, storeTurn(ctx, b, "s", first))
			require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: "dup", User: "retry with other text"}))
			w := loadWindow(t, b, "s", 10)
			assert.Equal(t, 1, w.TurnCount)
			require.Len(t, w.Turns, 1)
			assert.Equal(t, "first", w.Turns[0].User, "the first save wins")
			assert.Equal(t, []int64{1}, seqs(t, b, "s"))
			assert.Equal(t, 2, countMessages(t, b, "s"), "message rows")
			info, err := b.SessionInfo(ctx, "s")
			require.NoError(t, err)
			assert.Equal(t, 1, info.TurnCount, "a duplicate bumped the session row")

			// The same ID in another session is another turn.
			require.NoError(t, storeTurn(ctx, b, "s2", first))
			assert.Equal(t, 1, loadWindow(t, b, "s2", 10).TurnCount)

			// A duplicate of an old turn, far outside the window, is still found.
			for i := range 5 {
				require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: fmt.Sprint("more", i)}))
			}
			require.NoError(t, storeTurn(ctx, b, "s", first))
			assert.Equal(t, 6, loadWindow(t, b, "s", 2).TurnCount)
			assert.Equal(t, []int64{1, 2, 3, 4, 5, 6}, seqs(t, b, "s"))
		})

		t.Run("persistent memory", func(t *testing.T) {
			m := newMemory(t, b, memory.WithMaxTurns(3), memory.WithCacheTTL(time.Hour))
			turn := driver.Turn{ID: "mdup", User: "u", Agent: "a"}
			require.NoError(t, m.SaveTurn(ctx, "m", turn))
			cached := loadContext(t, m, "m") // cache the window
			require.NoError(t, m.SaveTurn(ctx, "m", turn))
			require.NoError(t, m.SaveTurn(ctx, "m", turn))
			got := loadContext(t, m, "m")
			assert.Equal(t, cached, got)
			assert.Equal(t, 1, got.TurnCount)
			assert.Equal(t, loadWindow(t, b, "m", 3), got, "cached window differs from read-through")
			assert.Equal(t, 2, countMessages(t, b, "m"), "message rows")

			// Push the turn out of the cached window, then retry it: the
			// cache must not count it again.
			for i := range 4 {
				require.NoError(t, m.SaveTurn(ctx, "m", driver.Turn{User: fmt.Sprint("later", i)}))
			}
			require.NoError(t, m.SaveTurn(ctx, "m", turn))
			got = loadContext(t, m, "m")
			assert.Equal(t, 5, got.TurnCount)
			assert.Equal(t, loadWindow(t, b, "m", 3), got, "cached window differs from read-through")
		})
	})
}

// countMessages counts the message rows of one session.
func countMessages(t *testing.T, b *DataFlowBackend, sessionID string) int {
	t.Helper()
	rows, err := b.db.QueryContext(context.Background(),
		b.db.Rebind(`SELECT count(*) FROM `+MessagesTable+` WHERE session_id = ?`), sessionID)
	require.NoError(t, err)
	defer rows.Close()
	require.True(t, rows.Next())
	var n int
	require.NoError(t, rows.Scan(&n))
	return n
}

func TestDataFlowBackendSessionInfoAndClear(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)

		_, err := b.SessionInfo(ctx, "s")
		require.ErrorIs(t, err, driver.ErrSessionNotFound)
		require.NoError(t, b.ClearSession(ctx, "s"), "clearing an unknown session")

		before := time.Now().UTC().Truncate(time.Microsecond)
		// The turns' own timestamps do not matter to SessionInfo.
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "u0", Timestamp: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}))
		info1, err := b.SessionInfo(ctx, "s")
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond)
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "u1"}))
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "u2"}))
		after := time.Now().UTC()
		require.NoError(t, storeTurn(ctx, b, "keep", driver.Turn{User: "k"}))

		info, err := b.SessionInfo(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, 1, info1.TurnCount)
		assert.Equal(t, 3, info.TurnCount)
		for name, ts := range map[string]time.Time{"created": info.CreatedAt, "updated": info.UpdatedAt} {
			assert.Same(t, time.UTC, ts.Location(), "%s location", name)
			assert.False(t, ts.Before(before) || ts.After(after), "%s %v; want within [%v, %v]", name, ts, before, after)
		}
		assert.Equal(t, info1.CreatedAt, info.CreatedAt, "created_at changed on a later save")
		assert.Equal(t, info1.CreatedAt, info1.UpdatedAt, "a new session's updated_at")
		assert.True(t, info.UpdatedAt.After(info1.UpdatedAt), "updated %v; want after %v", info.UpdatedAt, info1.UpdatedAt)

		require.NoError(t, b.ClearSession(ctx, "s"))
		assert.Zero(t, countMessages(t, b, "s"), "message rows left")
		assert.Equal(t, [2]int{1, 1}, tableCounts(t, b), "rows of the other session (its one user message)")
		_, err = b.SessionInfo(ctx, "s")
		assert.ErrorIs(t, err, driver.ErrSessionNotFound)
		assert.Equal(t, driver.Window{}, loadWindow(t, b, "s", 10))
		assert.Equal(t, 1, loadWindow(t, b, "keep", 10).TurnCount, "the other session")

		// A save after Clear starts over.
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: "again", User: "again"}))
		w := loadWindow(t, b, "s", 10)
		assert.Equal(t, 1, w.TurnCount)
		assert.Equal(t, []string{"again"}, users(w))
		assert.Equal(t, []int64{1}, seqs(t, b, "s"))
		info, err = b.SessionInfo(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, 1, info.TurnCount)
		assert.False(t, info.CreatedAt.Before(after), "created %v; want a new session after %v", info.CreatedAt, after)

		t.Run("through persistent memory", func(t *testing.T) {
			m := newMemory(t, b, memory.WithCacheTTL(time.Hour))
			require.NoError(t, m.SaveTurn(ctx, "pm", driver.Turn{User: "x"}))
			require.Equal(t, 1, loadContext(t, m, "pm").TurnCount)
			require.NoError(t, m.Clear(ctx, "pm"))
			assert.Equal(t, driver.Window{}, loadContext(t, m, "pm"), "cached window after Clear")
			assert.Zero(t, countMessages(t, b, "pm"))
			_, err := b.SessionInfo(ctx, "pm")
			assert.ErrorIs(t, err, driver.ErrSessionNotFound)
		})

		for _, id := range []string{"", strings.Repeat("s", 256), "\xff", "a\x00b"} {
			assert.ErrorIs(t, b.ClearSession(ctx, id), driver.ErrInvalidSessionID, "clear %q", id)
			_, err := b.SessionInfo(ctx, id)
			assert.ErrorIs(t, err, driver.ErrInvalidSessionID, "info %q", id)
		}
	})
}

func TestNewDataFlowBackend(t *testing.T) {
	t.Run("nil db", func(t *testing.T) {
		b, err := NewDataFlowBackend(nil)
		assert.ErrorIs(t, err, driver.ErrInvalidOption)
		assert.Nil(t, b)
	})
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		db, rec := openDB(t, d.URL(t))
		_, err := NewDataFlowBackend(db, WithLogger(nil))
		assert.ErrorIs(t, err, driver.ErrInvalidOption, "nil logger")

		_, err = NewDataFlowBackend(db, nil, WithSearchIndex(true))
		assert.ErrorIs(t, err, driver.ErrInvalidOption, "a nil option is an error, as in every constructor")

		b, err := NewDataFlowBackend(db, WithSearchIndex(true))
		require.NoError(t, err)
		assert.Same(t, db, b.DB())
		// A second backend on the same DB shares the registered tables.
		b2, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		assert.Empty(t, rec.take(), "statements run by NewDataFlowBackend")

		// Validation failures run nothing either.
		assert.ErrorIs(t, storeTurn(ctx, b, "s", driver.Turn{User: strings.Repeat("x", driver.DefaultMaxMessageBytes+1)}), driver.ErrTurnTooLarge)
		assert.Empty(t, rec.take(), "statements run by a refused save")

		// First use creates the tables; the hook sees the schema work, so
		// the zero above is not a hook that sees nothing.
		assert.Equal(t, driver.Window{}, loadWindow(t, b, "s", 1))
		kinds := byKind(rec.take())
		assert.NotEmpty(t, kinds[kindDDL], "DDL at first use")
		assert.Len(t, kinds[kindData], 1, "data statements of LoadWindow")

		require.NoError(t, storeTurn(ctx, b2, "s", driver.Turn{User: strings.Repeat("x", 11)}))
		assert.Equal(t, 1, loadWindow(t, b, "s", 1).TurnCount)
	})
}

func TestDataFlowBackendBadInputWritesNothing(t *testing.T) {
	// A backend given a turn no memory prepared validates it within the
	// default limit: the limit is set in one place, the memory.
	const limit = driver.DefaultMaxMessageBytes
	tests := []struct {
		name      string
		sessionID string
		turn      driver.Turn
		wantErr   error // nil: accepted, the positive control
	}{
		{"empty session ID", "", driver.Turn{User: "u"}, driver.ErrInvalidSessionID},
		{"256-byte session ID", strings.Repeat("s", 256), driver.Turn{User: "u"}, driver.ErrInvalidSessionID},
		{"invalid UTF-8 session ID", "s\xff", driver.Turn{User: "u"}, driver.ErrInvalidSessionID},
		{"NUL in session ID", "s\x00", driver.Turn{User: "u"}, driver.ErrInvalidSessionID},
		{"invalid UTF-8 user", "s", driver.Turn{User: "u\xc3", Agent: "a"}, driver.ErrInvalidTurn},
		{"NUL in user", "s", driver.Turn{User: "u\x00", Agent: "a"}, driver.ErrInvalidTurn},
		{"invalid UTF-8 agent", "s", driver.Turn{User: "u", Agent: "\xfe"}, driver.ErrInvalidTurn},
		{"NUL in agent", "s", driver.Turn{User: "u", Agent: "\x00"}, driver.ErrInvalidTurn},
		{"invalid UTF-8 metadata key", "s", driver.Turn{User: "u", Metadata: map[string]any{"k\xff": 1}}, driver.ErrInvalidTurn},
		{"NUL in metadata key", "s", driver.Turn{User: "u", Metadata: map[string]any{"k\x00": 1}}, driver.ErrInvalidTurn},
		{"invalid UTF-8 metadata value", "s", driver.Turn{User: "u", Metadata: map[string]any{"k": []any{"\xff"}}}, driver.ErrInvalidTurn},
		{"NUL in metadata value", "s", driver.Turn{User: "u", Metadata: map[string]any{"k": map[string]any{"v": "\x00"}}}, driver.ErrInvalidTurn},
		{"NUL in turn ID", "s", driver.Turn{ID: "\x00", User: "u"}, driver.ErrInvalidTurn},
		{"both empty", "s", driver.Turn{Metadata: map[string]any{"k": "v"}}, driver.ErrInvalidTurn},
		{"user over the limit", "s", driver.Turn{User: strings.Repeat("u", limit+1)}, driver.ErrTurnTooLarge},
		{"agent over the limit", "s", driver.Turn{User: "u", Agent: strings.Repeat("é", limit/2+1)}, driver.ErrTurnTooLarge},
		{"metadata over the limit", "s", driver.Turn{User: "u", Metadata: map[string]any{"k": strings.Repeat("m", limit)}}, driver.ErrTurnTooLarge},
		{"metadata with a channel", "s", driver.Turn{User: "u", Metadata: map[string]any{"c": make(chan int)}}, driver.ErrInvalidTurn},
		{"metadata with +Inf", "s", driver.Turn{User: "u", Metadata: map[string]any{"n": math.Inf(1)}}, driver.ErrInvalidTurn},
		{"timestamp year 10000", "s", driver.Turn{User: "u", Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, driver.ErrInvalidTurn},
		{"timestamp year 10000 in UTC only", "s", driver.Turn{User: "u", Timestamp: time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("EST", -5*3600))}, driver.ErrInvalidTurn},
		{"timestamp year 300000", "s", driver.Turn{User: "u", Timestamp: time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)}, driver.ErrInvalidTurn},
		{"timestamp year -5", "s", driver.Turn{User: "u", Timestamp: time.Date(-5, 6, 1, 0, 0, 0, 0, time.UTC)}, driver.ErrInvalidTurn},
		{"turn ID over 128 bytes", "s", driver.Turn{ID: strings.Repeat("é", 64) + "x", User: "u"}, driver.ErrInvalidTurn},
		// Positive controls: exactly at the limits, stored.
		{"255-byte session ID", strings.Repeat("s", 255), driver.Turn{User: "u"}, nil},
		{"messages at the limit", "s", driver.Turn{User: strings.Repeat("u", limit), Agent: strings.Repeat("a", limit)}, nil},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, rec := newEnv(t, d)
		m := newMemory(t, b, memory.WithMaxMessageBytes(limit), memory.WithCacheTTL(time.Hour))
		// Create the tables and one session, so counts are of real tables.
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "existing"}))

		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for _, via := range []struct {
					name string
					save func() error
				}{
					{"backend", func() error { return storeTurn(ctx, b, tt.sessionID, tt.turn) }},
					{"memory", func() error { return m.SaveTurn(ctx, tt.sessionID, tt.turn) }},
				} {
					before := tableCounts(t, b)
					rec.take()
					err := via.save()
					ran := rec.take()
					after := tableCounts(t, b)
					if tt.wantErr == nil {
						require.NoError(t, err, via.name)
						// One row per message: the user's, and the agent's if any.
						assert.Equal(t, before[1]+len(prepared(t, tt.turn).Messages), after[1], "%s: message rows of an accepted turn", via.name)
						continue
					}
					require.ErrorIs(t, err, tt.wantErr, via.name)
					assert.Equal(t, before, after, "%s: row counts (sessions, messages) changed", via.name)
					assert.Empty(t, ran, "%s: statements run for refused input", via.name)
				}
			})
		}
		assert.Equal(t, 3, loadWindow(t, b, "s", 10).TurnCount, "the existing turn plus two accepted at the limit")
	})
}

// With auto-migration off and no tables, every call says so with a typed
// error, the write path included.
func TestDataFlowBackendTablesMissing(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		db, err := dataflow.Open(ctx, d.URL(t), dataflow.WithAutoMigrate(false))
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		_, err = b.Save(ctx, "s", driver.PreparedTurn{Turn: driver.Turn{User: "u", Agent: "a"}})
		require.ErrorIs(t, err, dataflow.ErrTableMissing, "Save")
		require.ErrorIs(t, err, dataflow.ErrEnsureFailed, "Save")
		require.ErrorIs(t, storeTurn(ctx, b, "s", driver.Turn{User: "u", Agent: "a"}), dataflow.ErrTableMissing, "SaveTurn")
		_, err = readWindow(ctx, b, "s", 10)
		require.ErrorIs(t, err, dataflow.ErrTableMissing, "LoadWindow")
		require.ErrorIs(t, b.ClearSession(ctx, "s"), dataflow.ErrTableMissing, "ClearSession")
		_, err = b.SessionInfo(ctx, "s")
		require.ErrorIs(t, err, dataflow.ErrTableMissing, "SessionInfo")
	})
}
