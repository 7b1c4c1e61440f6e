package memory_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// recordingSummarizer records every turn it folds and may be held: while
// gate is not closed, each call waits.
type recordingSummarizer struct {
	gate chan struct{}

	mu     sync.Mutex // protects folded, calls
	folded []memory.Turn
	calls  int
}

func newRecordingSummarizer(blocked bool) *recordingSummarizer {
	r := &recordingSummarizer{gate: make(chan struct{})}
	if !blocked {
		close(r.gate)
	}
	return r
}

func (r *recordingSummarizer) Summarize(ctx context.Context, req memory.SummaryRequest) (string, error) {
	select {
	case <-r.gate:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.folded = append(r.folded, req.Turns...)
	ids := make([]string, len(req.Turns))
	for i, t := range req.Turns {
		ids[i] = t.ID
	}
	return strings.TrimSpace(req.Previous + " " + strings.Join(ids, " ")), nil
}

func (r *recordingSummarizer) turns() []memory.Turn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]memory.Turn(nil), r.folded...)
}

// twoServers returns two memories, each over its own connection pool to
// one database: two app servers.
func summaryServers(t *testing.T, d dbtest.Dialect, s memory.Summarizer, opts ...memory.Option) (*memory.PersistentBufferMemory, *memory.PersistentBufferMemory, *dataflow.DB) {
	url := d.URL(t)
	var ms [2]*memory.PersistentBufferMemory
	var first *dataflow.DB
	for i := range ms {
		db, err := dataflow.Open(context.Background(), url)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		b, err := backend.NewDataFlowBackend(db)
		require.NoError(t, err)
		ms[i], err = memory.NewPersistentBufferMemory(b, append([]memory.Option{memory.WithSummarizer(s, 200)}, opts...)...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = ms[i].Close() })
		if first == nil {
			first = db
		}
	}
	return ms[0], ms[1], first
}

// requireAccounted loads the session from every memory and checks the
// accounting rule, returning the first window.
func requireAccounted(t *testing.T, id string, ms ...*memory.PersistentBufferMemory) memory.Window {
	t.Helper()
	var first memory.Window
	for i, m := range ms {
		w, err := m.LoadContext(context.Background(), id)
		require.NoError(t, err)
		covered := 0
		if w.Summary != nil {
			covered = w.Summary.Turns
		}
		require.Equal(t, w.TurnCount, covered+w.Unsummarized+len(w.Turns),
			"memory %d: Summary.Turns %d + Unsummarized %d + len(Turns) %d; want TurnCount %d", i, covered, w.Unsummarized, len(w.Turns), w.TurnCount)
		if i == 0 {
			first = w
		}
	}
	return first
}

func toolTurn(i int) memory.Turn {
	if i%3 != 0 {
		return memory.Turn{ID: fmt.Sprintf("t%02d", i), User: fmt.Sprintf("question %d", i), Agent: fmt.Sprintf("answer %d", i)}
	}
	// A tool call and its result in one turn.
	return memory.Turn{ID: fmt.Sprintf("t%02d", i), Messages: []memory.Message{
		{Role: memory.RoleUser, Content: fmt.Sprintf("weather %d?", i)},
		{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: fmt.Sprintf("c%d", i), Name: "weather", Arguments: `{"city":"Oslo"}`}}},
		{Role: memory.RoleTool, ToolCallID: fmt.Sprintf("c%d", i), Content: "sunny"},
		{Role: memory.RoleAssistant, Content: "It is sunny."},
	}}
}

// Two app servers on one database, a summarizer held: every load
// accounts for each turn once, Unsummarized grows while the summarizer
// is held and is 0 after Summarize, each turn is folded once, whole, and
// oldest first.
func TestSummaryAcrossServers(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		rec := newRecordingSummarizer(true)
		a, b, _ := summaryServers(t, d, rec, memory.WithMaxTurns(3))
		const n = 12
		for i := 1; i <= n; i++ {
			m := a
			if i%2 == 0 {
				m = b
			}
			require.NoError(t, m.SaveTurn(ctx, "s", toolTurn(i)))
			w := requireAccounted(t, "s", a, b)
			assert.Nil(t, w.Summary, "held: no summary yet")
			assert.Equal(t, max(i-3, 0), w.Unsummarized, "after turn %d", i)
		}
		close(rec.gate)
		s, err := a.Summarize(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, n-3, s.Turns)
		w := requireAccounted(t, "s", a, b)
		assert.Equal(t, 0, w.Unsummarized)
		require.NotNil(t, w.Summary)
		assert.Equal(t, n-3, w.Summary.Turns)
		assert.Positive(t, w.Summary.Tokens)
		wb, err := b.LoadContext(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, w.Summary.Text, wb.Summary.Text, "the other server sees the summary")

		folded := rec.turns()
		require.Len(t, folded, n-3, "each turn folded once")
		for i, turn := range folded {
			want := toolTurn(i + 1)
			assert.Equal(t, want.ID, turn.ID, "oldest first")
			msgs := max(len(want.Messages), 2) // User and Agent make two
			assert.Len(t, turn.Messages, msgs, "turn %s folded whole", turn.ID)
		}

		// Summarize with nothing to fold returns the summary as it is.
		again, err := b.Summarize(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, s.Text, again.Text)
		assert.Len(t, rec.turns(), n-3, "nothing folded twice")

		// History still holds every turn.
		h, err := a.History(ctx, "s", memory.HistoryQuery{Limit: 100})
		require.NoError(t, err)
		assert.Len(t, h.Turns, n)

		// The background worker folds what later saves push out.
		for i := n + 1; i <= n+4; i++ {
			require.NoError(t, b.SaveTurn(ctx, "s", toolTurn(i)))
			requireAccounted(t, "s", a, b)
		}
		require.Eventually(t, func() bool {
			w := requireAccounted(t, "s", a, b)
			return w.Unsummarized == 0 && w.Summary != nil && w.Summary.Turns == n+1
		}, 10*time.Second, 10*time.Millisecond)
		assert.Len(t, rec.turns(), n+1, "each turn folded once")
	})
}

// A token budget counts the summary's tokens: the turns fit what is left.
func TestSummaryTokenBudget(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		rec := newRecordingSummarizer(false)
		a, b, _ := summaryServers(t, d, rec, memory.WithMaxTurns(50), memory.WithTokenBudget(60), memory.WithTokenCounter(byLength))
		for i := 1; i <= 20; i++ {
			require.NoError(t, a.SaveTurn(ctx, "s", memory.Turn{ID: fmt.Sprintf("t%02d", i), User: "0123456789"}))
			requireAccounted(t, "s", a, b)
		}
		_, err := a.Summarize(ctx, "s")
		require.NoError(t, err)
		w := requireAccounted(t, "s", a, b)
		require.NotNil(t, w.Summary)
		assert.Equal(t, 0, w.Unsummarized)
		assert.LessOrEqual(t, w.Tokens, max(60-w.Summary.Tokens, 10), "turns fit the budget minus the summary")
		// A wider per-call window never shows a covered turn twice.
		w, err = a.LoadContext(ctx, "s", memory.LoadMaxTurns(50), memory.LoadTokenBudget(1000))
		require.NoError(t, err)
		assert.Equal(t, w.TurnCount, w.Summary.Turns+w.Unsummarized+len(w.Turns))
	})
}

// Clear, ReplaceSession, DeleteUser and Expire delete the summary, and a
// write of a lease taken before lands nowhere.
func TestSummaryErasure(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		rec := newRecordingSummarizer(false)
		a, b, db := summaryServers(t, d, rec, memory.WithMaxTurns(2))
		// rows lists the sessions whose summary holds folded text. The
		// background worker may hold a lease on a replaced session for a
		// moment (an empty row, no text); it must not outlive the fold.
		rows := func() []string {
			t.Helper()
			var ids []string
			r, err := db.Bun().QueryContext(ctx, "SELECT id FROM "+backend.SummariesTable+" WHERE turns > 0 OR text <> ''")
			require.NoError(t, err)
			defer r.Close()
			for r.Next() {
				var id string
				require.NoError(t, r.Scan(&id))
				ids = append(ids, id)
			}
			require.NoError(t, r.Err())
			return ids
		}
		t.Cleanup(func() {
			// No lease row is left behind once the worker is done.
			assert.Eventually(t, func() bool {
				var n int
				err := db.Bun().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+backend.SummariesTable).Scan(&n)
				return err == nil && n == 0
			}, 10*time.Second, 20*time.Millisecond)
		})
		fill := func(id string) {
			for i := 1; i <= 5; i++ {
				require.NoError(t, a.SaveTurn(ctx, id, memory.Turn{ID: fmt.Sprintf("t%d", i), User: "Ada Lovelace 1815"}))
			}
			s, err := a.Summarize(ctx, id)
			require.NoError(t, err)
			require.Equal(t, 3, s.Turns)
		}
		fill("c")
		require.NoError(t, b.Clear(ctx, "c"))
		w := requireAccounted(t, "c", a, b)
		assert.Nil(t, w.Summary)
		assert.Empty(t, rows())

		fill("r")
		require.NoError(t, b.ReplaceSession(ctx, "r", memory.Turn{ID: "x", User: "new"}))
		w = requireAccounted(t, "r", a, b)
		assert.Nil(t, w.Summary)
		assert.Empty(t, rows())

		require.NoError(t, a.CreateSession(ctx, memory.SessionInfo{ID: "u", User: "ada"}))
		fill("u")
		_, err := b.DeleteUser(ctx, "ada")
		require.NoError(t, err)
		assert.Empty(t, rows())

		fill("e")
		_, err = b.Expire(ctx, time.Now().Add(time.Hour))
		require.NoError(t, err)
		assert.Empty(t, rows())
	})
}

// Export carries the summary (format turnkeep.session/2) and Import
// stores it; a session without one still exports as turnkeep.session/1,
// which every earlier release reads.
func TestSummaryExportImport(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		rec := newRecordingSummarizer(false)
		a, b, _ := summaryServers(t, d, rec, memory.WithMaxTurns(2))
		for i := 1; i <= 6; i++ {
			require.NoError(t, a.SaveTurn(ctx, "s", toolTurn(i)))
		}
		want, err := a.Summarize(ctx, "s")
		require.NoError(t, err)
		require.Equal(t, 4, want.Turns)

		var out strings.Builder
		require.NoError(t, a.Export(ctx, "s", &out))
		assert.Contains(t, strings.SplitN(out.String(), "\n", 2)[0], `"format":"turnkeep.session/2"`)
		assert.Contains(t, out.String(), want.Text)

		other := b.ForTenant("elsewhere")
		_, err = other.Import(ctx, strings.NewReader(out.String()))
		require.NoError(t, err)
		w := requireAccounted(t, "s", other)
		require.NotNil(t, w.Summary)
		assert.Equal(t, want.Text, w.Summary.Text)
		assert.Equal(t, want.Turns, w.Summary.Turns)
		assert.Equal(t, want.Tokens, w.Summary.Tokens)
		assert.Equal(t, 0, w.Unsummarized)

		// No summary: the format every release reads.
		require.NoError(t, a.SaveTurn(ctx, "plain", toolTurn(1)))
		out.Reset()
		require.NoError(t, a.Export(ctx, "plain", &out))
		assert.Contains(t, strings.SplitN(out.String(), "\n", 2)[0], `"format":"`+memory.ExportFormat+`"`)
		assert.NotContains(t, out.String(), `"summary"`)

		// A summary claiming more turns than the file holds is refused,
		// and nothing is stored.
		bad := strings.Replace(strings.Replace(out.String(), memory.ExportFormat, "turnkeep.session/2", 1),
			`"turn_count":1`, `"turn_count":1,"summary":{"text":"x","turns":5,"tokens":1,"updated_at":"2026-01-01T00:00:00Z"}`, 1)
		_, err = other.Import(ctx, strings.NewReader(strings.Replace(bad, `"id":"plain"`, `"id":"bad"`, 1)))
		require.ErrorIs(t, err, memory.ErrInvalidImport)
		_, err = other.SessionInfo(ctx, "bad")
		require.ErrorIs(t, err, memory.ErrSessionNotFound)
	})
}

// The in-memory backend keeps summaries by the same contract: two
// memories on one backend, a held summarizer, the accounting rule on
// every load, each turn folded once, a clear taking the summary.
func TestSummaryInMemoryBackend(t *testing.T) {
	ctx := context.Background()
	rec := newRecordingSummarizer(true)
	be := backend.NewInMemoryBackend()
	var ms [2]*memory.PersistentBufferMemory
	for i := range ms {
		m, err := memory.NewPersistentBufferMemory(be, memory.WithMaxTurns(3), memory.WithSummarizer(rec, 100))
		require.NoError(t, err)
		t.Cleanup(func() { _ = m.Close() })
		ms[i] = m
	}
	for i := 1; i <= 8; i++ {
		require.NoError(t, ms[i%2].SaveTurn(ctx, "s", toolTurn(i)))
		w := requireAccounted(t, "s", ms[0], ms[1])
		assert.Equal(t, max(i-3, 0), w.Unsummarized)
	}
	close(rec.gate)
	s, err := ms[1].Summarize(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, 5, s.Turns)
	w := requireAccounted(t, "s", ms[0], ms[1])
	assert.Equal(t, 0, w.Unsummarized)
	require.Len(t, rec.turns(), 5, "each turn folded once")
	require.NoError(t, ms[0].Clear(ctx, "s"))
	require.NoError(t, ms[0].SaveTurn(ctx, "s", toolTurn(1)))
	w = requireAccounted(t, "s", ms[0], ms[1])
	assert.Nil(t, w.Summary, "the clear took the summary")
}

// failingSummarizer fails its first n calls (or hangs past the call's
// timeout when slow), then folds as recordingSummarizer does.
type failingSummarizer struct {
	recordingSummarizer
	left atomic.Int32
	slow bool
}

func (f *failingSummarizer) Summarize(ctx context.Context, req memory.SummaryRequest) (string, error) {
	if f.left.Add(-1) >= 0 {
		if f.slow {
			<-ctx.Done()
			return "", ctx.Err()
		}
		return "", errors.New("model overloaded")
	}
	return f.recordingSummarizer.Summarize(ctx, req)
}

// A failing or slow summarizer never fails a save or a load: the worker
// retries it with backoff, counts and logs each failure, and the summary
// lands once it succeeds, each turn folded once.
func TestSummaryFailuresRetried(t *testing.T) {
	for _, slow := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow=%t", slow), func(t *testing.T) {
			ctx := context.Background()
			f := &failingSummarizer{recordingSummarizer: *newRecordingSummarizer(false), slow: slow}
			f.left.Store(2)
			var logs lockedLog
			m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), memory.WithMaxTurns(2),
				memory.WithSummarizer(f, 50), memory.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			require.NoError(t, err)
			defer m.Close()
			memory.SetSummaryTiming(m, 20*time.Millisecond, time.Millisecond)
			for i := 1; i <= 5; i++ {
				require.NoError(t, m.SaveTurn(ctx, "s", toolTurn(i)))
				requireAccounted(t, "s", m)
			}
			require.Eventually(t, func() bool {
				w := requireAccounted(t, "s", m)
				return w.Summary != nil && w.Summary.Turns == 3
			}, 10*time.Second, 5*time.Millisecond)
			fig := m.Figures()
			assert.Equal(t, uint64(2), fig.SummaryFailures)
			assert.Positive(t, fig.Summaries)
			assert.Equal(t, 2, strings.Count(logs.String(), "turnkeep: summary failed"), "%s", logs.String())
			assert.Len(t, f.turns(), 3, "each turn folded once")
		})
	}
}

type lockedLog struct {
	mu sync.Mutex // protects b
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An append that grows a turn pushes older turns out of a token budget:
// the worker folds them, and the turns fit the budget less the summary.
func TestSummaryAfterAppend(t *testing.T) {
	ctx := context.Background()
	rec := newRecordingSummarizer(false)
	m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), memory.WithMaxTurns(50),
		memory.WithTokenBudget(100), memory.WithTokenCounter(byLength), memory.WithSummarizer(rec, 20))
	require.NoError(t, err)
	defer m.Close()
	for i := 1; i <= 5; i++ {
		require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: fmt.Sprintf("t%02d", i), User: "0123456789"}))
	}
	w := requireAccounted(t, "s", m)
	require.Len(t, w.Turns, 5, "all fit: nothing to fold")
	require.NoError(t, m.AppendMessages(ctx, "s", "t05", memory.Message{Role: memory.RoleAssistant, Content: strings.Repeat("x", 60)}))
	require.Eventually(t, func() bool {
		w := requireAccounted(t, "s", m)
		return w.Unsummarized == 0 && w.Summary != nil
	}, 10*time.Second, 5*time.Millisecond)
	w = requireAccounted(t, "s", m)
	// "t01 t02" is 7 tokens: t03 to t05 (90) fit the 93 left, t02 did not.
	assert.Equal(t, 2, w.Summary.Turns)
	assert.Equal(t, "t01 t02", w.Summary.Text)
	assert.Equal(t, 90, w.Tokens)
	assert.Len(t, rec.turns(), 2)
}

// enteringSummarizer signals each call on entered and holds it until
// gate closes; its summary is the folded turns' text.
type enteringSummarizer struct {
	entered chan struct{}
	gate    chan struct{}
}

func (e *enteringSummarizer) Summarize(ctx context.Context, req memory.SummaryRequest) (string, error) {
	select {
	case e.entered <- struct{}{}:
	default:
	}
	select {
	case <-e.gate:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	var b strings.Builder
	b.WriteString(req.Previous)
	for _, t := range req.Turns {
		b.WriteString(" " + t.User)
	}
	return b.String(), nil
}

// A fold whose lease was taken before a Clear, ReplaceSession,
// DeleteUser or Expire on another server writes nothing when its
// summarizer returns: the erased turns' text is in no summary, on no
// server, and no summary row outlives a deleted session.
func TestSummaryFoldRacingErasure(t *testing.T) {
	ops := []struct {
		name string
		run  func(t *testing.T, m *memory.PersistentBufferMemory, id string)
		gone bool // the session itself is deleted
	}{
		{"Clear", func(t *testing.T, m *memory.PersistentBufferMemory, id string) {
			require.NoError(t, m.Clear(context.Background(), id))
			require.NoError(t, m.SaveTurn(context.Background(), id, memory.Turn{ID: "after", User: "after the clear"}))
		}, false},
		{"ReplaceSession", func(t *testing.T, m *memory.PersistentBufferMemory, id string) {
			require.NoError(t, m.ReplaceSession(context.Background(), id, memory.Turn{ID: "new", User: "the replacement"}))
		}, false},
		{"DeleteUser", func(t *testing.T, m *memory.PersistentBufferMemory, id string) {
			_, err := m.DeleteUser(context.Background(), "ada")
			require.NoError(t, err)
		}, true},
		{"Expire", func(t *testing.T, m *memory.PersistentBufferMemory, id string) {
			_, err := m.Expire(context.Background(), time.Now().Add(time.Hour))
			require.NoError(t, err)
		}, true},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		for _, op := range ops {
			t.Run(op.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				e := &enteringSummarizer{entered: make(chan struct{}, 1), gate: make(chan struct{})}
				a, b, db := summaryServers(t, d, e, memory.WithMaxTurns(2))
				const marker = "erased-7f3a"
				require.NoError(t, a.CreateSession(ctx, memory.SessionInfo{ID: "s", User: "ada"}))
				for i := 1; i <= 5; i++ {
					require.NoError(t, a.SaveTurn(ctx, "s", memory.Turn{ID: fmt.Sprint("t", i), User: fmt.Sprintf("%s %d", marker, i)}))
				}
				done := make(chan error, 1)
				go func() { _, err := a.Summarize(ctx, "s"); done <- err }()
				select {
				case <-e.entered: // a holds the lease, its summarizer is running
				case <-ctx.Done():
					t.Fatal("no fold began")
				}
				op.run(t, b, "s")
				close(e.gate)
				require.NoError(t, <-done)

				// What a and b load, and every summary row, once both
				// workers are done with the session.
				require.Eventually(t, func() bool {
					var n int
					err := db.Bun().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+backend.SummariesTable+" WHERE lease_owner <> ''").Scan(&n)
					return err == nil && n == 0
				}, 10*time.Second, 20*time.Millisecond, "a lease outlived the fold")
				var n int
				require.NoError(t, db.Bun().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+backend.SummariesTable+" WHERE text LIKE ?", "%"+marker+"%").Scan(&n))
				assert.Zero(t, n, "a summary row holds erased text")
				if op.gone {
					require.NoError(t, db.Bun().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+backend.SummariesTable).Scan(&n))
					assert.Zero(t, n, "a summary row outlived its session")
					return
				}
				w := requireAccounted(t, "s", a, b)
				if w.Summary != nil {
					assert.NotContains(t, w.Summary.Text, marker)
				}
				for _, m := range []*memory.PersistentBufferMemory{a, b} {
					h, err := m.History(ctx, "s", memory.HistoryQuery{Limit: 100})
					require.NoError(t, err)
					require.Len(t, h.Turns, 1)
				}
			})
		}
	})
}

// Without a summarizer nothing changes: a memory without one, on a
// database where another server keeps a summary of the session, loads
// the window it always did, with no Summary and Unsummarized 0, for its
// own window and a per-call one; Summarize is an invalid option.
func TestNoSummarizerNothingChanges(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		a, _, db := summaryServers(t, d, newRecordingSummarizer(false), memory.WithMaxTurns(3))
		b, err := backend.NewDataFlowBackend(db)
		require.NoError(t, err)
		plain, err := memory.NewPersistentBufferMemory(b, memory.WithMaxTurns(3))
		require.NoError(t, err)
		t.Cleanup(func() { _ = plain.Close() })
		for i := 1; i <= 8; i++ {
			require.NoError(t, a.SaveTurn(ctx, "s", toolTurn(i)))
		}
		s, err := a.Summarize(ctx, "s")
		require.NoError(t, err)
		require.Equal(t, 5, s.Turns, "the other server keeps a summary")
		for _, opts := range [][]memory.LoadOption{nil, {memory.LoadMaxTurns(6)}, {memory.LoadMaxTurns(1)}} {
			w, err := plain.LoadContext(ctx, "s", opts...)
			require.NoError(t, err)
			assert.Nil(t, w.Summary)
			assert.Zero(t, w.Unsummarized)
			assert.Equal(t, 8, w.TurnCount)
		}
		w, err := plain.LoadContext(ctx, "s", memory.LoadMaxTurns(6))
		require.NoError(t, err)
		require.Len(t, w.Turns, 6, "a window wider than the summary leaves is not cut")
		assert.Equal(t, "t03", w.Turns[0].ID)
		_, err = plain.Summarize(ctx, "s")
		require.ErrorIs(t, err, memory.ErrInvalidOption)
	})
}
