package tests

// Search flat in history length (issue 17, item 5), on SQLite and
// PostgreSQL, measured in one run on one database of one tenant:
//
//   - a search scoped to one session for a rare word, in a session of 1,000
//     messages and in one of big messages: the big one may cost at most 2x;
//   - a tenant-wide search for a word in half of the tenant's messages
//     against one for a rare word: the common word's top hits may cost at
//     most 20x.
//
// big is 20,000 messages by default (CI), 1,000,000 with TURNKEEP_SCALE=1:
//
//	TURNKEEP_SCALE=1 go test ./tests -run 'TestSearchFlat' -v -timeout 60m
//
// with TURNKEEP_POSTGRES_URL set to run it on PostgreSQL too.

import (
	"context"
	"fmt"
	"os"
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

const (
	flatSmallMessages = 1_000
	flatBigMessages   = 20_000    // always
	flatRaceMessages  = 2_000     // under -race
	flatScaleMessages = 1_000_000 // with TURNKEEP_SCALE=1

	flatRareWord   = "zephyrine"  // in flatRareHits messages of each session
	flatCommonWord = "ubiquitous" // in every other message: half the tenant's
	flatRareHits   = 10
	flatLimit      = 20

	// The goals at 1,000,000 messages (issue 17).
	flatScopedMax = 2.0  // scoped rare word, big session / small session
	flatCommonMax = 20.0 // tenant-wide common word / rare word
	// At the CI size the same shape is checked with room for a loaded
	// machine's noise: a statement that grows with the session or with
	// the matches breaks them too (before the fix: 3.5x and 60x at
	// 20,000 messages on SQLite).
	flatScopedMaxCI = 3.0
	flatCommonMaxCI = 30.0
)

func TestSearchFlat(t *testing.T) {
	big := flatBigMessages
	switch {
	case raceEnabled:
		big = flatRaceMessages
	case os.Getenv(scaleEnv) == "1":
		big = flatScaleMessages
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		if d.Name == "mysql" {
			t.Skip("MySQL's search is a LIKE scan of the scope by design (sessMySQLMaxRatio); issue 17's goals name SQLite and PostgreSQL")
		}
		searchFlat(t, d, big)
	})
}

// flatText is message (seq, pos) of session i: random words, the common
// word in every other message, the rare word in flatRareHits messages
// spread over the session, the last near its end.
func flatText(i int, turns int64) func(seq int64, pos int32) string {
	stride := turns / flatRareHits
	return func(seq int64, pos int32) string {
		text := scaleText(i, seq, pos, map[int32]int{0: 80, 1: 200}[pos])
		if pos == 0 {
			text += " " + flatCommonWord
		}
		if pos == 1 && seq%stride == stride/2 {
			text += " " + flatRareWord + "."
		}
		return text
	}
}

func searchFlat(t *testing.T, d dbtest.Dialect, big int) {
	ctx := context.Background()
	s := sessOpen(t, d)
	start := time.Now()
	const smallID, bigID = 0, 1
	s.loadSession(t, smallID, flatSmallMessages/2, flatText(smallID, flatSmallMessages/2))
	s.loadSession(t, bigID, int64(big/2), flatText(bigID, int64(big/2)))
	loaded := time.Since(start)
	maintained := s.maintain(t)
	messages := flatSmallMessages + big
	if got := s.count(t, `SELECT COUNT(*) FROM `+backend.MessagesTable); got != messages {
		t.Fatalf("%d messages stored, want %d", got, messages)
	}
	t.Logf("%s: loaded %d messages in %v; maintenance %v; size %s", d.Name, messages,
		loaded.Round(time.Millisecond), maintained.Round(time.Millisecond), scaleSize(ctx, s.db, s.url))

	type query struct {
		name string
		q    memory.SearchQuery
		want int
	}
	queries := []query{
		{"scoped rare, 1k session", memory.SearchQuery{SessionID: sessID(smallID), Text: flatRareWord, Limit: flatLimit}, flatRareHits},
		{fmt.Sprintf("scoped rare, %d session", big), memory.SearchQuery{SessionID: sessID(bigID), Text: flatRareWord, Limit: flatLimit}, flatRareHits},
		{"tenant rare", memory.SearchQuery{Text: flatRareWord, Limit: flatLimit}, 2 * flatRareHits},
		{"tenant common", memory.SearchQuery{Text: flatCommonWord, Limit: flatLimit}, flatLimit},
		// For the record, and what they find is checked: a common word in
		// each session (on SQLite matched with the session's token).
		{"scoped common, 1k session", memory.SearchQuery{SessionID: sessID(smallID), Text: flatCommonWord, Limit: flatLimit}, flatLimit},
		{fmt.Sprintf("scoped common, %d session", big), memory.SearchQuery{SessionID: sessID(bigID), Text: flatCommonWord, Limit: flatLimit}, flatLimit},
	}
	run := func(q query) time.Duration {
		start := time.Now()
		hits, err := s.mem.Search(ctx, q.q)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		if len(hits) != q.want {
			t.Fatalf("%s: %d hits, want %d", q.name, len(hits), q.want)
		}
		word := strings.TrimSpace(q.q.Text)
		for _, h := range hits {
			if q.q.SessionID != "" && h.SessionID != q.q.SessionID {
				t.Fatalf("%s: a hit of session %q", q.name, h.SessionID)
			}
			if !strings.Contains(h.Message.Content, word) {
				t.Fatalf("%s: hit %s/%s does not hold %q: %q", q.name, h.SessionID, h.TurnID, word, h.Message.Content)
			}
		}
		return took
	}
	// Interleaved rounds: each round runs every query a few times, so that
	// drift falls on all alike; the first round warms the pages.
	rounds, per := 7, 9
	if raceEnabled {
		rounds, per = 2, 3
	}
	samples := make([][]time.Duration, len(queries))
	var scoped, common []float64 // per-round ratios of the round's medians
	for r := range rounds {
		med := make([]time.Duration, len(queries))
		for i, q := range queries {
			ds := []time.Duration{run(q)}
			for n := 1; n < per && ds[0] < 250*time.Millisecond; n++ { // a slow one once a round
				ds = append(ds, run(q))
			}
			med[i] = median(ds)
			if r > 0 {
				samples[i] = append(samples[i], ds...)
			}
		}
		if r > 0 {
			scoped = append(scoped, float64(med[1])/float64(med[0]))
			common = append(common, float64(med[3])/float64(med[2]))
		}
	}
	for i, q := range queries {
		t.Logf("%s, %d messages: %-28s median %v", d.Name, messages, q.name, median(samples[i]))
	}
	scopedMax, commonMax := flatScopedMaxCI, flatCommonMaxCI
	if big >= flatScaleMessages {
		scopedMax, commonMax = flatScopedMax, flatCommonMax
	}
	rs, rc := medianFloat(scoped), medianFloat(common)
	t.Logf("%s: scoped rare word, %d-message session / %d-message session: %.2fx (median of %d rounds; bound %.1fx)", d.Name, big, flatSmallMessages, rs, len(scoped), scopedMax)
	t.Logf("%s: tenant-wide common word (in %d messages) / rare word: %.2fx (median of %d rounds; bound %.0fx)", d.Name, messages/2, rc, len(common), commonMax)
	if raceEnabled {
		t.Logf("the ratios are not checked under -race")
		return
	}
	if rs > scopedMax {
		t.Errorf("a scoped search for a rare word costs %.2fx in a %d-message session what it costs in a %d-message one, want at most %.1fx", rs, big, flatSmallMessages, scopedMax)
	}
	if rc > commonMax {
		t.Errorf("a tenant-wide search for a word in half of %d messages costs %.2fx a rare word's, want at most %.0fx", messages, rc, commonMax)
	}
}

func medianFloat(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// loadSession bulk-inserts session i of turns turns (two messages each) in
// transactions of flatChunk turns, its rows shaped as sessDB.load shapes
// them, search entries included.
func (s *sessDB) loadSession(tb testing.TB, i int, turns int64, text func(seq int64, pos int32) string) {
	tb.Helper()
	ctx := context.Background()
	const chunk = 5_000
	key := driver.SessionKey(sessTenant, sessID(i))
	rowText := s.dialect != "sqlite"
	var tokens int64
	for first := int64(1); first <= turns; first += chunk {
		last := min(turns, first+chunk-1)
		mrows := make([]backend.MessageRow, 0, 2*(last-first+1))
		var fts []any
		for seq := first; seq <= last; seq++ {
			mrows, fts, tokens = appendScaleTurn(mrows, fts, key, scaleTurnID(i, seq), seq, tokens,
				scaleEpoch.Add(time.Duration(seq)*time.Second), rowText, func(pos int32) string { return text(seq, pos) })
		}
		err := s.loader.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			if first == 1 {
				srow := backend.SessionRow{ID: key, Tenant: sessTenant, UserID: listOwner(i),
					Title: "chat " + sessID(i), TurnCount: turns, Version: 1, Counted: 1,
					CreatedAt: scaleEpoch, UpdatedAt: sessUpdated(i)}
				if err := s.sessions.WithTx(tx).BulkCreate(ctx, []backend.SessionRow{srow}); err != nil {
					return err
				}
			}
			return s.writeScaleMessages(ctx, tx, mrows, fts)
		})
		if err != nil {
			tb.Fatalf("load session %d turns %d..%d: %v", i, first, last, err)
		}
	}
	// The session's token total, as saves leave it.
	if _, err := s.loader.ExecContext(ctx, s.loader.Rebind(`UPDATE `+backend.SessionsTable+` SET tokens = ? WHERE id = ?`), tokens, key); err != nil {
		tb.Fatalf("session tokens: %v", err)
	}
}
