package backend

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// scanOfMessages is a plan line that reads the message table (or an alias
// of it) without a key: a scan of every row, or of every row of a session.
var scanOfMessages = regexp.MustCompile(`^SCAN (turnkeep_messages|m|x|h)\b|USING (COVERING )?INDEX \S+ \(session_id=\?\)$|PRIMARY KEY \(session_id=\?\)$|ANY\(session_id\)`)

// With compact keys (SQLite), every statement that finds a message by ID or
// a turn by ID is served by the partial indexes and the primary key: a
// save's and an append's insert (both forms of an ID), the turn lookups of
// a held turn, an append, an import and a fork. On realistic, analyzed
// data, so that the planner has a choice.
func TestCompactKeysPlans(t *testing.T) {
	d := dbtest.Dialect{Name: "sqlite", URL: dbtest.SQLiteURL}
	ctx := context.Background()
	b, _ := newEnv(t, d)
	require.True(t, b.compact)
	fillSessions(t, b, 50, 40)
	require.NoError(t, storeTurn(ctx, b, "session-001", driver.Turn{ID: "t", User: "q", Agent: "a"}))
	// The statements made on first use: an import's and a fork's.
	require.NoError(t, b.Import(ctx, "session-002", driver.SessionInfo{}, func() (driver.PreparedTurn, error) { return driver.PreparedTurn{}, io.EOF }))
	require.NoError(t, b.Fork(ctx, "session-001", "t", "fork"))
	analyzeAll(t, b)

	named := func(name string) *dataflow.Stmt {
		b.namedMu.Lock()
		defer b.namedMu.Unlock()
		st := b.named[name]
		require.NotNil(t, st, name)
		return st
	}
	msgs, err := driver.PrepareMessages([]driver.Message{
		{ID: "session-001-turn-003/1", Role: driver.RoleUser, Content: "another place's derived form"},
		{ID: "mine", Role: driver.RoleAssistant, Content: "given"},
	}, 0, nil)
	require.NoError(t, err)
	turn, err := driver.Prepare(driver.Turn{ID: "u", User: "q", Agent: "a"}, time.Now(), 0, nil)
	require.NoError(t, err)
	at := time.Now().UTC()
	for _, c := range []struct {
		name  string
		query string
		args  []any
		want  []string // index names the plan must use
	}{
		{"save's insert", b.insertRows(2, false).String(), b.rowArgs(nil, "session-001", 99, 0, "u", turn.Encoded, 0, nil, at),
			[]string{msgIDIdx}},
		{"append's insert", b.insertRows(2, true).String(), b.rowArgs(nil, "session-001", 3, 2, "session-001-turn-003", msgs, 0, nil, at),
			[]string{msgIDIdx, turnHeadIdx}},
		{"held turn", b.knownTurn.String(), []any{"session-001", "session-001-turn-007"}, []string{turnHeadIdx}},
		{"append's turn", b.findTurn.String(), []any{"session-001", "session-001-turn-007"}, []string{turnHeadIdx}},
		{"import's turn", named("import/held").String(), []any{"session-001", "session-001", "session-001-turn-007"}, []string{turnHeadIdx}},
		{"fork point", named("fork/find").String(), []any{"session-001", "session-001-turn-007"}, []string{turnHeadIdx}},
	} {
		plan := explainQuery(t, b, planPrefix(b), c.query, c.args...)
		text := strings.Join(plan, "\n")
		t.Logf("%s:\n%s", c.name, text)
		for _, line := range plan {
			assert.NotRegexp(t, scanOfMessages, line, "%s: a scan of the message table", c.name)
			assert.NotContains(t, line, "TEMP B-TREE", "%s: a sort", c.name)
		}
		for _, ix := range c.want {
			assert.Contains(t, text, "INDEX "+ix+" ", "%s: served by %s", c.name, ix)
		}
	}
}
