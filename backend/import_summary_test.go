package backend

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
)

// importHeadSummary is the session line of an import of session id with
// turns turns, whose summary covers covered of them.
func importHeadSummary(id string, turns, covered int, text string) string {
	at := time.Unix(1700000000, 0).UTC()
	data, _ := json.Marshal(map[string]any{"format": "turnkeep.session/2", "id": id, "turn_count": turns,
		"created_at": at, "updated_at": at,
		"summary": map[string]any{"text": text, "turns": covered, "tokens": 4, "updated_at": at}})
	return string(data)
}

// storedSummaryOf is the session's stored summary, nil for none.
func storedSummaryOf(t *testing.T, b driver.Backend, key string) *driver.Summary {
	t.Helper()
	w, _, err := b.Load(context.Background(), key, driver.WindowQuery{MaxTurns: 1, Known: driver.UnknownVersion, Summary: true})
	require.NoError(t, err)
	return w.Summary
}

// An import with a summary is all or nothing: the summary is written in
// the import's own transaction, so a failure after it (importFault, after
// the turns and the summary are written) leaves neither the turns nor the
// summary, and a good import stores both; a second import whose summary
// covers no more than the stored one leaves the stored one.
func TestImportSummaryAllOrNothing(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		require.Implements(t, (*driver.SummaryImporter)(nil), b)
		m := newMemory(t, b)
		file := importLines(importHeadSummary("s", 2, 1, "the user is Ada, 42"),
			importTurn("t1", "m1=I am Ada", "m2=hi Ada"), importTurn("t2", "m3=I am 42", "m4=noted"))

		fault := errors.New("fault after the summary")
		importFault = func(string) error { return fault }
		_, err := m.Import(ctx, strings.NewReader(file))
		importFault = nil
		require.ErrorIs(t, err, fault)
		ids, count := heldTurns(t, m, "s")
		assert.Empty(t, ids, "a failed import stores no turn")
		assert.Equal(t, -1, count, "a failed import makes no session")
		w, _, err := b.Load(ctx, "s", driver.WindowQuery{MaxTurns: 1, Known: driver.UnknownVersion, Summary: true})
		require.NoError(t, err)
		assert.Nil(t, w.Summary, "a failed import stores no summary")

		info, err := m.Import(ctx, strings.NewReader(file))
		require.NoError(t, err)
		assert.Equal(t, 2, info.TurnCount)
		ids, _ = heldTurns(t, m, "s")
		assert.Equal(t, []string{"t1", "t2"}, ids)
		sum := storedSummaryOf(t, b, "s")
		require.NotNil(t, sum, "a good import stores the summary")
		assert.Equal(t, "the user is Ada, 42", sum.Text)
		assert.Equal(t, 1, sum.Turns)
		assert.Equal(t, 4, sum.Tokens)

		// A summary covering no more than the stored one is not stored.
		less := importLines(importHeadSummary("s", 2, 1, "other"),
			importTurn("t1", "m1=I am Ada", "m2=hi Ada"), importTurn("t2", "m3=I am 42", "m4=noted"))
		_, err = m.Import(ctx, strings.NewReader(less))
		require.NoError(t, err)
		assert.Equal(t, "the user is Ada, 42", storedSummaryOf(t, b, "s").Text)
		// One covering more is.
		more := importLines(importHeadSummary("s", 2, 2, "both turns"),
			importTurn("t1", "m1=I am Ada", "m2=hi Ada"), importTurn("t2", "m3=I am 42", "m4=noted"))
		_, err = m.Import(ctx, strings.NewReader(more))
		require.NoError(t, err)
		sum = storedSummaryOf(t, b, "s")
		assert.Equal(t, "both turns", sum.Text)
		assert.Equal(t, 2, sum.Turns)

		// A fault after the summary of an import into a session that
		// exists leaves its turns and summary as they were.
		grow := importLines(importHeadSummary("s", 3, 3, "three"),
			importTurn("t1", "m1=I am Ada", "m2=hi Ada"), importTurn("t2", "m3=I am 42", "m4=noted"), importTurn("t3", "m5=bye"))
		importFault = func(string) error { return fault }
		_, err = m.Import(ctx, strings.NewReader(grow))
		importFault = nil
		require.ErrorIs(t, err, fault)
		ids, count = heldTurns(t, m, "s")
		assert.Equal(t, []string{"t1", "t2"}, ids)
		assert.Equal(t, 2, count)
		assert.Equal(t, "both turns", storedSummaryOf(t, b, "s").Text)
	})
}
