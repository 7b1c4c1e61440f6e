package memory_test

import (
	"context"
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

func TestValidateSessionID(t *testing.T) {
	tests := []struct {
		name, id string
		wantMsg  string // "" means valid
	}{
		{"simple", "session-1", ""},
		{"255 bytes", strings.Repeat("s", 255), ""},
		{"unicode", "sitzung-ü-会話", ""},
		{"empty", "", "empty"},
		{"256 bytes", strings.Repeat("s", 256), "256 bytes"},
		{"invalid UTF-8", "s\xff", "UTF-8"},
		{"NUL", "s\x00t", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := memory.ValidateSessionID(tt.id)
			if tt.wantMsg == "" {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, memory.ErrInvalidSessionID)
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

// nested returns depth maps, each holding the next under "a".
func nested(depth int, leaf any) map[string]any {
	m := map[string]any{"a": leaf}
	for i := 1; i < depth; i++ {
		m = map[string]any{"a": m}
	}
	return m
}

const testMaxBytes = 64

// invalidTurns breaks every rule of PrepareTurn with a limit of testMaxBytes.
func invalidTurns() []struct {
	name    string
	turn    memory.Turn
	wantErr error
} {
	cycle := map[string]any{}
	cycle["self"] = cycle
	return []struct {
		name    string
		turn    memory.Turn
		wantErr error
	}{
		{"user and agent empty", memory.Turn{ID: "x"}, memory.ErrInvalidTurn},
		{"NUL in user", memory.Turn{User: "a\x00b"}, memory.ErrInvalidTurn},
		{"NUL in agent", memory.Turn{Agent: "a\x00b"}, memory.ErrInvalidTurn},
		{"invalid UTF-8 user", memory.Turn{User: "a\xffb"}, memory.ErrInvalidTurn},
		{"invalid UTF-8 agent", memory.Turn{User: "u", Agent: "\xc3"}, memory.ErrInvalidTurn},
		{"NUL in ID", memory.Turn{ID: "a\x00", User: "u"}, memory.ErrInvalidTurn},
		{"invalid UTF-8 ID", memory.Turn{ID: "\xff", User: "u"}, memory.ErrInvalidTurn},
		{"ID 129 bytes", memory.Turn{ID: strings.Repeat("i", 129), User: "u"}, memory.ErrInvalidTurn},
		{"user too large", memory.Turn{User: strings.Repeat("u", testMaxBytes+1)}, memory.ErrTurnTooLarge},
		{"agent too large", memory.Turn{User: "u", Agent: strings.Repeat("a", testMaxBytes+1)}, memory.ErrTurnTooLarge},
		{"metadata too large", memory.Turn{User: "u", Metadata: map[string]any{"k": strings.Repeat("m", testMaxBytes)}}, memory.ErrTurnTooLarge},
		{"metadata chan", memory.Turn{User: "u", Metadata: map[string]any{"c": make(chan int)}}, memory.ErrInvalidTurn},
		{"metadata func", memory.Turn{User: "u", Metadata: map[string]any{"f": func() {}}}, memory.ErrInvalidTurn},
		{"metadata NaN", memory.Turn{User: "u", Metadata: map[string]any{"n": math.NaN()}}, memory.ErrInvalidTurn},
		{"metadata cycle", memory.Turn{User: "u", Metadata: cycle}, memory.ErrInvalidTurn},
		{"NUL in key at depth", memory.Turn{User: "u", Metadata: nested(3, map[string]any{"k\x00": 1})}, memory.ErrInvalidTurn},
		{"NUL in value at depth", memory.Turn{User: "u", Metadata: nested(3, []any{"ok", "v\x00"})}, memory.ErrInvalidTurn},
		{"invalid UTF-8 key", memory.Turn{User: "u", Metadata: map[string]any{"k\xff": 1}}, memory.ErrInvalidTurn},
		{"invalid UTF-8 value at depth", memory.Turn{User: "u", Metadata: nested(2, []string{"\xfe"})}, memory.ErrInvalidTurn},
		{"marshaler writes invalid UTF-8", memory.Turn{User: "u", Metadata: map[string]any{"r": json.RawMessage("\"\xff\"")}}, memory.ErrInvalidTurn},
		{"marshaler writes lone surrogate", memory.Turn{User: "u", Metadata: map[string]any{"r": json.RawMessage(`"\ud800x"`)}}, memory.ErrInvalidTurn},
		{"marshaler writes escaped NUL", memory.Turn{User: "u", Metadata: map[string]any{"r": json.RawMessage(`"\u0000"`)}}, memory.ErrInvalidTurn},
		{"negative seq", memory.Turn{User: "u", Seq: -1}, memory.ErrInvalidTurn},
	}
}

func TestPrepareTurnRejects(t *testing.T) {
	for _, tt := range invalidTurns() {
		t.Run(tt.name, func(t *testing.T) {
			_, data, err := driver.PrepareTurn(tt.turn, time.Now(), testMaxBytes)
			require.ErrorIs(t, err, tt.wantErr)
			assert.Nil(t, data)
		})
	}
}

// nestedSlices returns map{"a": ...} around depth-1 nested []any, leaf
// innermost: depth containers in all.
func nestedSlices(depth int, leaf any) map[string]any {
	v := leaf
	for i := 1; i < depth; i++ {
		v = []any{v}
	}
	return map[string]any{"a": v}
}

// node is a user type that nests through pointers.
type node struct{ Next *node }

func chain(n int) *node {
	var head *node
	for range n {
		head = &node{Next: head}
	}
	return head
}

// The boundary, as metadataTooDeep draws it: the Metadata map is level 1 and
// every object or array inside adds one, so a scalar inside 100 nested
// objects or arrays (JSON nesting 100) is accepted and inside 101 refused.
// For a Go type, pointers and interfaces count as levels too, so a chain of
// *node holds about half as many JSON levels.
func TestPrepareTurnMetadataDepthLimit(t *testing.T) {
	tests := []struct {
		name    string
		meta    map[string]any
		wantErr bool
	}{
		{"maps 100", nested(memory.MaxMetadataDepth, 1), false},
		{"maps 101", nested(memory.MaxMetadataDepth+1, 1), true},
		{"arrays 100", nestedSlices(memory.MaxMetadataDepth, 1), false},
		{"arrays 101", nestedSlices(memory.MaxMetadataDepth+1, 1), true},
		{"nil leaf 101", nested(memory.MaxMetadataDepth+1, nil), true},
		{"struct chain 10", map[string]any{"n": chain(10)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, data, err := driver.PrepareTurn(memory.Turn{User: "u", Metadata: tt.meta}, time.Now(), 0)
			if !tt.wantErr {
				require.NoError(t, err)
				assert.NotEmpty(t, data)
				return
			}
			require.ErrorIs(t, err, memory.ErrInvalidTurn)
			assert.Contains(t, err.Error(), "deeper than 100 levels")
			assert.Nil(t, data)
		})
	}
}

// Metadata a million levels deep is refused before encoding/json walks it
// (which took 2.7 s and 1 GB), in a handful of allocations, and never
// stored.
func TestMetadataMillionLevelsDeep(t *testing.T) {
	const depth = 1_000_000
	ctx := context.Background()
	tests := []struct {
		name string
		meta map[string]any
	}{
		{"maps", nested(depth, 1)},
		{"arrays", nestedSlices(depth, 1)},
		{"struct chain", map[string]any{"n": chain(depth)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			turn := memory.Turn{User: "u", Metadata: tt.meta}
			start := time.Now()
			_, _, err := driver.PrepareTurn(turn, start, 0)
			elapsed := time.Since(start)
			require.ErrorIs(t, err, memory.ErrInvalidTurn)
			allocs := testing.AllocsPerRun(10, func() { _, _, _ = driver.PrepareTurn(turn, start, 0) })
			t.Logf("refused in %v, %.0f allocations", elapsed, allocs)
			assert.Less(t, elapsed, time.Second)
			assert.Less(t, allocs, 100.0)

			b := newRecordingBackend()
			m, err := memory.NewPersistentBufferMemory(b)
			require.NoError(t, err)
			require.ErrorIs(t, m.SaveTurn(ctx, "s", turn), memory.ErrInvalidTurn)
			assert.Zero(t, b.calls(), "an invalid turn reached the backend")
			require.ErrorIs(t, storeTurn(ctx, b.InMemoryBackend, "s", turn), memory.ErrInvalidTurn)
			_, err = b.InMemoryBackend.SessionInfo(ctx, "s")
			assert.ErrorIs(t, err, memory.ErrSessionNotFound, "something was stored")
		})
	}
}

func TestPrepareTurnWrapsJSONError(t *testing.T) {
	_, _, err := driver.PrepareTurn(memory.Turn{User: "u", Metadata: map[string]any{"c": make(chan int)}}, time.Now(), 0)
	var typeErr *json.UnsupportedTypeError
	assert.ErrorAs(t, err, &typeErr)
}

func TestPrepareTurnDefaultLimit(t *testing.T) {
	for _, limit := range []int{0, -1} {
		_, _, err := driver.PrepareTurn(memory.Turn{User: strings.Repeat("u", memory.DefaultMaxMessageBytes)}, time.Now(), limit)
		assert.NoError(t, err, "limit %d", limit)
		_, _, err = driver.PrepareTurn(memory.Turn{User: strings.Repeat("u", memory.DefaultMaxMessageBytes+1)}, time.Now(), limit)
		assert.ErrorIs(t, err, memory.ErrTurnTooLarge, "limit %d", limit)
	}
}

func TestPrepareTurnNormalizes(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))
	wantNow := time.Date(2025, 3, 4, 4, 6, 7, 123456000, time.UTC)

	t.Run("generated ID and timestamp", func(t *testing.T) {
		got, data, err := driver.PrepareTurn(memory.Turn{User: "u"}, now, 0)
		require.NoError(t, err)
		assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{32}$`), got.ID)
		assert.Equal(t, wantNow, got.Timestamp)
		assert.Equal(t, time.UTC, got.Timestamp.Location())
		assert.Nil(t, got.Metadata)
		assert.Nil(t, data)
	})
	t.Run("given ID and timestamp", func(t *testing.T) {
		ts := time.Date(2020, 1, 1, 0, 0, 0, 999, time.FixedZone("Y", -7200))
		got, _, err := driver.PrepareTurn(memory.Turn{ID: "turn-1", Agent: "a", Timestamp: ts}, now, 0)
		require.NoError(t, err)
		assert.Equal(t, "turn-1", got.ID)
		assert.Equal(t, time.Date(2020, 1, 1, 2, 0, 0, 0, time.UTC), got.Timestamp)
	})
	t.Run("empty metadata is nil", func(t *testing.T) {
		got, data, err := driver.PrepareTurn(memory.Turn{User: "u", Metadata: map[string]any{}}, now, 0)
		require.NoError(t, err)
		assert.Nil(t, got.Metadata)
		assert.Nil(t, data)
	})
	t.Run("metadata round trips and is not aliased", func(t *testing.T) {
		inner := map[string]any{"n": 1}
		meta := map[string]any{
			"int":    7,
			"inner":  inner,
			"list":   []string{"x"},
			"text":   "<a&b> \u2028 \ufffd 😀", // escaped by encoding/json, or a genuine U+FFFD
			"pair":   json.RawMessage(`"\ud83d\ude00"`),
			"struct": struct{ A int }{A: 2},
		}
		got, data, err := driver.PrepareTurn(memory.Turn{User: "u", Metadata: meta}, now, 0)
		require.NoError(t, err)
		want := map[string]any{
			"int":    float64(7),
			"inner":  map[string]any{"n": float64(1)},
			"list":   []any{"x"},
			"text":   "<a&b> \u2028 \ufffd 😀",
			"pair":   "😀",
			"struct": map[string]any{"A": float64(2)},
		}
		assert.Equal(t, want, got.Metadata)
		var decoded map[string]any
		require.NoError(t, json.Unmarshal(data, &decoded))
		assert.Equal(t, want, decoded)

		meta["int"] = 8
		inner["n"] = 2
		assert.Equal(t, want, got.Metadata, "the prepared turn changed with the caller's map")
	})
}

func TestNewTurnID(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := memory.NewTurnID()
		require.Regexp(t, `^[0-9a-f]{32}$`, id)
		require.False(t, seen[id], "duplicate id %s", id)
		seen[id] = true
	}
}

// Invalid input gets a typed error from every Memory and never reaches the
// backend.
func TestInvalidInputNeverReachesBackend(t *testing.T) {
	ctx := context.Background()
	type memoryCase struct {
		name string
		new  func(driver.Backend) memory.Memory
	}
	memories := []memoryCase{
		{"persistent", func(b driver.Backend) memory.Memory {
			return newPersistent(t, b, memory.WithMaxMessageBytes(testMaxBytes))
		}},
		{"persistent without cache", func(b driver.Backend) memory.Memory {
			return newPersistent(t, b, memory.WithMaxMessageBytes(testMaxBytes), memory.WithCacheTTL(0))
		}},
		{"buffer", func(driver.Backend) memory.Memory {
			return memory.NewBufferMemory(memory.WithMaxMessageBytes(testMaxBytes))
		}},
	}
	for _, mc := range memories {
		t.Run(mc.name, func(t *testing.T) {
			for _, tt := range invalidTurns() {
				t.Run(tt.name, func(t *testing.T) {
					b := newRecordingBackend()
					m := mc.new(b)
					err := m.SaveTurn(ctx, "s", tt.turn)
					require.ErrorIs(t, err, tt.wantErr)
					assert.Zero(t, b.calls(), "backend calls")
					w, err := m.LoadContext(ctx, "s")
					require.NoError(t, err)
					assert.Zero(t, w.TurnCount, "a refused turn was stored")
				})
			}
			for _, id := range []string{"", strings.Repeat("s", 256), "\xff", "a\x00"} {
				t.Run("session "+strings.ToValidUTF8(id[:min(len(id), 8)], "?"), func(t *testing.T) {
					b := newRecordingBackend()
					m := mc.new(b)
					assert.ErrorIs(t, m.SaveTurn(ctx, id, memory.Turn{User: "u"}), memory.ErrInvalidSessionID)
					_, err := m.LoadContext(ctx, id)
					assert.ErrorIs(t, err, memory.ErrInvalidSessionID)
					assert.ErrorIs(t, m.Clear(ctx, id), memory.ErrInvalidSessionID)
					assert.Zero(t, b.calls(), "backend calls")
				})
			}
		})
	}
}

// Metadata that shares one map many times over (a DAG, not a cycle) holds
// 2^60 values once encoded: it is refused as too large before encoding,
// in bounded time, instead of encoding for ever.
func TestPrepareTurnMetadataSharedMaps(t *testing.T) {
	m := map[string]any{"leaf": "x"}
	for range 60 {
		m = map[string]any{"a": m, "b": m}
	}
	start := time.Now()
	_, _, err := driver.PrepareTurn(memory.Turn{User: "u", Metadata: m}, time.Now(), 0)
	t.Logf("refused in %v", time.Since(start))
	require.ErrorIs(t, err, memory.ErrTurnTooLarge)

	cyclic := map[string]any{}
	cyclic["self"] = []any{cyclic}
	_, _, err = driver.PrepareTurn(memory.Turn{User: "u", Metadata: cyclic}, time.Now(), 0)
	require.ErrorIs(t, err, memory.ErrInvalidTurn)
	require.ErrorContains(t, err, "cycle")
}

// Seq is kept as given: it is a condition of the save, not normalized.
func TestPrepareTurnKeepsSeq(t *testing.T) {
	for _, seq := range []int{0, 1, 7} {
		p, err := driver.Prepare(memory.Turn{User: "u", Seq: seq}, time.Now(), testMaxBytes, nil)
		require.NoError(t, err)
		assert.Equal(t, seq, p.Seq)
	}
}
