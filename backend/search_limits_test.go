package backend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
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

// Search limits (issue 16, item 7): a search returns by its deadline
// whatever its text, a query over driver.MaxSearchTerms distinct terms or
// driver.MaxSearchBytes bytes is driver.ErrInvalidQuery before any SQL,
// and a CJK sentence at the limit still finds its message.

// raceEnabled reports whether the test binary was built with -race, which
// slows the pure-Go SQLite driver some hundredfold.
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

// cjkPool is the Han characters the CJK messages and queries are made of.
var cjkPool = func() []rune {
	var rs []rune
	for r := rune(0x4E00); len(rs) < 3000; r += 3 {
		rs = append(rs, r)
	}
	return rs
}()

// cjkText is n characters drawn from cjkPool by r, the first ones most
// often (a Zipf distribution, as characters of real text are), so that
// the commonest occur in most messages.
func cjkText(r *rand.Rand, n int) string {
	z := rand.NewZipf(r, 1.1, 8, uint64(len(cjkPool)-1))
	var b strings.Builder
	b.Grow(3 * n)
	for range n {
		b.WriteRune(cjkPool[z.Uint64()])
	}
	return b.String()
}

// loadCJK bulk-inserts sessions holding msgs messages of 40 to 160 CJK
// characters in all, with their search entries, as saves of tenant leave
// them (on PostgreSQL and MySQL the rows' search_text, on SQLite the FTS5
// rows of SearchEntry).
func loadCJK(t testing.TB, b *DataFlowBackend, tenant string, msgs int) {
	t.Helper()
	ctx := context.Background()
	rowText := b.db.Dialect() != "sqlite" // the rows carry their search text
	const perSession, perTx = 100, 2000   // messages: 50 turns of 2
	r := rand.New(rand.NewPCG(1, 2))
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for first := 0; first < msgs; first += perTx {
		var srows []SessionRow
		var mrows []MessageRow
		var fts []any
		for s := first / perSession; s*perSession < min(msgs, first+perTx); s++ {
			key := driver.SessionKey(tenant, fmt.Sprintf("c%06d", s))
			var tokens int64
			for i := range perSession {
				seq, pos := int64(i/2+1), int32(i%2)
				content := cjkText(r, 40+r.IntN(120))
				tid := fmt.Sprintf("t%d", seq)
				tok := int64(len(content) / 4)
				row := MessageRow{SessionID: key, Seq: seq, Pos: pos, TurnID: tid,
					MsgID: sql.NullString{String: driver.DerivedMessageID(tid, int(pos)), Valid: true},
					Role:  "user", Content: content, Tokens: tok, TokensBefore: tokens, CreatedAt: epoch}
				tokens += tok
				if rowText {
					row.SearchText = sql.NullString{String: driver.SearchText(content), Valid: true}
				} else if e, ok := SearchEntry(key, seq, pos, content); ok {
					fts = append(fts, e...)
				}
				mrows = append(mrows, row)
			}
			srows = append(srows, SessionRow{ID: key, Tenant: tenant, TurnCount: perSession / 2, Version: 1,
				Tokens: tokens, Counted: 1, CreatedAt: epoch, UpdatedAt: epoch})
		}
		err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			if err := b.sessions.WithTx(tx).BulkCreate(ctx, srows); err != nil {
				return err
			}
			if err := b.messages.WithTx(tx).BulkCreate(ctx, mrows); err != nil {
				return err
			}
			for len(fts) > 0 {
				k := min(len(fts), 1000*6)
				q := `INSERT INTO ` + SearchTable + ` (body, sk, tk, skey, seq, pos) VALUES ` +
					strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", k/6), ", ")
				if _, err := tx.ExecContext(ctx, q, fts[:k]...); err != nil {
					return err
				}
				fts = fts[k:]
			}
			if rowText {
				return nil
			}
			// The entries are written: nothing is left for the index to
			// catch up (the trigger queued the rows).
			_, err := tx.ExecContext(ctx, `DELETE FROM `+SearchQueueTable+` WHERE tenant = ?`, tenant)
			return err
		})
		require.NoError(t, err)
	}
}

// words is n words of text, each "w" and its index modulo distinct, so
// that it holds min(n, distinct) distinct terms.
func words(n, distinct int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "w%d ", i%distinct)
	}
	return b.String()
}

// searchSlack is how long after its deadline a search may return: 100 ms,
// as the issue asks, and more under the race detector.
func searchSlack() time.Duration {
	if raceEnabled {
		return 500 * time.Millisecond
	}
	return 100 * time.Millisecond
}

// waitIdle waits until no connection of b's pool is in use: a search cut
// off by its deadline returns before its statement has stopped (see
// Search), and the statement must stop soon after.
func waitIdle(t *testing.T, b *DataFlowBackend) {
	t.Helper()
	start := time.Now()
	for b.db.Bun().Stats().InUse > 0 {
		require.Less(t, time.Since(start), 5*time.Second, "a search statement still runs")
		time.Sleep(time.Millisecond)
	}
}

// TestSearchReturnsByDeadline is the case scaled down: before,
// a 300 KB query of CJK text ran 14 s past a 2 s deadline on SQLite (FTS5
// parses the expression of its 100,000 terms in quadratic time, without
// checking for an interrupt), however few messages it searched. Every
// search now returns within searchSlack of its deadline: refused at once
// when over the limits, cut off by the driver when it outlasts it.
func TestSearchReturnsByDeadline(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		m := newMemory(t, b, memory.WithCacheTTL(0)).ForTenant("cjk")
		require.NoError(t, m.SaveTurn(ctx, "boot", driver.Turn{User: "boot"})) // the tables
		_, err := m.Search(ctx, driver.SearchQuery{Text: "boot"})              // and the search index
		require.NoError(t, err)
		msgs := 4000
		if raceEnabled {
			msgs = 400
		}
		loadCJK(t, b, "cjk", msgs)

		r := rand.New(rand.NewPCG(9, 9))
		queries := []struct {
			name, text string
			over       bool // over the limits: ErrInvalidQuery
		}{
			{"300 KB of CJK text", cjkText(r, 100_000), true},
			{"1 MiB of words", strings.Repeat("memory window ", 1<<20/14), true},
			{"a word more than the limit", words(driver.MaxSearchTerms+1, driver.MaxSearchTerms+1), true},
			{"the commonest CJK characters, at the limit", string(cjkPool[:driver.MaxSearchTerms]), false},
			{"4 common CJK characters", string(cjkPool[:4]), false},
			{"a CJK sentence", cjkText(r, 60), false},
		}
		for _, q := range queries {
			for _, deadline := range []time.Duration{time.Millisecond, 20 * time.Millisecond, time.Second} {
				t.Run(fmt.Sprintf("%s/%v", q.name, deadline), func(t *testing.T) {
					for _, call := range []struct {
						name   string
						search func(ctx context.Context) ([]driver.SearchHit, error)
					}{
						{"memory", func(ctx context.Context) ([]driver.SearchHit, error) {
							return m.Search(ctx, driver.SearchQuery{Text: q.text})
						}},
						{"backend", func(ctx context.Context) ([]driver.SearchHit, error) {
							return b.Search(ctx, "cjk", driver.SearchQuery{Text: q.text, Limit: 20})
						}},
					} {
						ctx, cancel := context.WithTimeout(ctx, deadline)
						start := time.Now()
						_, err := call.search(ctx)
						took := time.Since(start)
						cancel()
						waitIdle(t, b)
						assert.LessOrEqual(t, took, deadline+searchSlack(), "%s: returned %v after a deadline of %v (err %v)", call.name, took, deadline, err)
						switch {
						case q.over:
							assert.ErrorIs(t, err, driver.ErrInvalidQuery, call.name)
						case err != nil:
							assert.ErrorIs(t, err, context.DeadlineExceeded, call.name)
						}
					}
				})
			}
		}
	})
}

// A query over the limits is ErrInvalidQuery on every backend, directly
// and through memory, before any SQL and before allocating in proportion
// to its text; a query at the limits is searched.
func TestSearchQueryLimits(t *testing.T) {
	over := []struct{ name, text string }{
		{"a distinct term more than MaxSearchTerms", words(driver.MaxSearchTerms+1, driver.MaxSearchTerms+1)},
		{"a byte more than MaxSearchBytes", strings.Repeat("a", driver.MaxSearchBytes+1)},
		{"CJK characters over MaxSearchTerms", string(cjkPool[:driver.MaxSearchTerms+1])},
		{"1 MiB", strings.Repeat("x", 1<<20)},
	}
	within := []struct{ name, text string }{
		{"MaxSearchTerms distinct terms", words(driver.MaxSearchTerms, driver.MaxSearchTerms)},
		{"MaxSearchBytes of repeated terms", strings.Repeat("ab ", driver.MaxSearchBytes/3)},
		{"MaxSearchTerms CJK characters", string(cjkPool[:driver.MaxSearchTerms])},
	}
	run := func(t *testing.T, b driver.SessionStore, rec *recorder) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("lim")
		require.NoError(t, m.SaveTurn(ctx, "s1", driver.Turn{User: "ab w1 w2", Agent: "ok"}))
		_, err := m.Search(ctx, driver.SearchQuery{Text: "ab"}) // creates the search index
		require.NoError(t, err)
		for _, q := range over {
			if rec != nil {
				rec.take()
			}
			_, err := m.Search(ctx, driver.SearchQuery{Text: q.text})
			require.ErrorIs(t, err, driver.ErrInvalidQuery, "memory: %s", q.name)
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			_, err = b.Search(ctx, "lim", driver.SearchQuery{Text: q.text, Limit: 20})
			runtime.ReadMemStats(&ms)
			require.ErrorIs(t, err, driver.ErrInvalidQuery, "backend: %s", q.name)
			assert.Less(t, ms.TotalAlloc-before, uint64(64<<10), "%s: bytes allocated to refuse it", q.name)
			if rec != nil {
				assert.Empty(t, rec.take(), "%s: no SQL", q.name)
			}
		}
		for _, q := range within {
			_, err := m.Search(ctx, driver.SearchQuery{Text: q.text})
			require.NoError(t, err, q.name)
		}
		hits, err := m.Search(ctx, driver.SearchQuery{Text: strings.Repeat("AB ab ", 100)})
		require.NoError(t, err)
		require.Len(t, hits, 1, "a term repeated is one term")
	}
	t.Run("inmemory", func(t *testing.T) { run(t, NewInMemoryBackend(), nil) })
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, rec := newEnv(t, d)
		run(t, b, rec)
	})
}

// A CJK sentence, and CJK text of exactly MaxSearchTerms distinct
// characters, find the message that holds them.
func TestSearchCJKSentenceAtLimit(t *testing.T) {
	sentence := "我们明天上午十点在东京车站的北口见面，然后一起去附近的咖啡店讨论下个季度的产品发布计划和预算安排，请提前准备好相关资料。"
	atLimit := string(cjkPool[len(cjkPool)-driver.MaxSearchTerms:]) // none of the common ones
	require.Len(t, driver.SearchTerms(atLimit), driver.MaxSearchTerms)
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("cjk")
		require.NoError(t, m.SaveTurn(ctx, "plans", driver.Turn{User: "明天的安排？", Agent: sentence}))
		require.NoError(t, m.SaveTurn(ctx, "pool", driver.Turn{User: "字：" + atLimit + "。", Agent: "好"}))
		require.NoError(t, m.SaveTurn(ctx, "other", driver.Turn{User: "我们在东京见面吧", Agent: "好的"}))
		for _, c := range []struct{ text, session, content string }{
			{sentence, "plans", sentence},
			{atLimit, "pool", "字：" + atLimit + "。"},
		} {
			hits, err := m.Search(ctx, driver.SearchQuery{Text: c.text})
			require.NoError(t, err)
			require.Len(t, hits, 1, "%d terms", len(driver.SearchTerms(c.text)))
			assert.Equal(t, c.session, hits[0].SessionID)
			assert.Equal(t, c.content, hits[0].Message.Content)
		}
		_, err := m.Search(ctx, driver.SearchQuery{Text: atLimit + "丁"})
		require.True(t, errors.Is(err, driver.ErrInvalidQuery), "one character over: %v", err)
	})
}
