package backend

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// The fixtures of testdata/upgrade hold what the previous release (before
// the sessions table had a version column) wrote: 3 sessions of 5 turns.
// See testdata/upgrade/README.md for how they were made.
const (
	upgradeSessions = 3
	upgradeTurns    = 5
)

// upgradeTurn is turn i of session s as the fixture generator saved it.
func upgradeTurn(s, i int) driver.Turn {
	t := driver.Turn{
		ID:        fmt.Sprintf("s%d-t%d", s, i),
		User:      fmt.Sprintf("question %d of session %d", i, s),
		Agent:     fmt.Sprintf("answer %d of session %d", i, s),
		Timestamp: time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(s*100+i) * time.Second),
		Metadata:  map[string]any{"session": float64(s), "turn": float64(i), "tags": []any{"a", fmt.Sprint(i)}},
	}
	if i == 3 {
		t.Metadata = nil
	}
	return t
}

func upgradeSession(s int) string { return fmt.Sprintf("session-%d", s) }

// previousSQLite copies the previous release's SQLite file into a
// temporary directory and returns its URL.
func previousSQLite(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "upgrade", "previous.db"))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "previous.db")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return "sqlite:///" + path
}

// previousPostgres returns the URL of a fresh schema holding what the
// previous release wrote on PostgreSQL.
func previousPostgres(t *testing.T) string {
	t.Helper()
	url := dbtest.PostgresURL(t)
	script, err := os.ReadFile(filepath.Join("testdata", "upgrade", "previous_pg.sql"))
	require.NoError(t, err)
	raw, err := sql.Open("pgx", url)
	require.NoError(t, err)
	defer raw.Close()
	// Without arguments the script goes as one simple-protocol message,
	// which may hold many statements.
	_, err = raw.ExecContext(context.Background(), string(script))
	require.NoError(t, err, "run previous_pg.sql")
	return url
}

// sessionColumns returns the columns of the sessions table, from the
// catalog.
func sessionColumns(t *testing.T, db *dataflow.DB) []string {
	t.Helper()
	q := `SELECT name FROM pragma_table_info('` + SessionsTable + `') ORDER BY cid`
	if db.Dialect() == "pg" {
		q = `SELECT column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = '` + SessionsTable + `' ORDER BY ordinal_position`
	}
	rows, err := db.QueryContext(context.Background(), q)
	require.NoError(t, err)
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		require.NoError(t, rows.Scan(&c))
		cols = append(cols, c)
	}
	require.NoError(t, rows.Err())
	return cols
}

// A database the previous release wrote opens under this release with no
// option: the sessions table gains its version column, additively, the
// history records it, and every stored turn reads back, saves on, and
// clears.
func TestDataFlowBackendUpgradesPreviousRelease(t *testing.T) {
	for _, d := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", previousSQLite},
		{"pg", previousPostgres},
	} {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			url := d.url(t)
			db, err := dataflow.Open(ctx, url)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, db.Close()) })
			require.Equal(t, []string{"id", "turn_count", "created_at", "updated_at"}, sessionColumns(t, db),
				"the fixture's sessions table is not the previous release's")
			before, err := db.Migrator().History(ctx, SessionsTable)
			require.NoError(t, err)
			require.Len(t, before, 1, "the fixture's history of %s", SessionsTable)

			b, err := NewDataFlowBackend(db)
			require.NoError(t, err)
			m1 := newMemory(t, b, memory.WithMaxTurns(10), memory.WithCacheTTL(time.Hour))
			m2 := newMemory(t, b, memory.WithMaxTurns(10), memory.WithCacheTTL(time.Hour))

			// Every turn reads back as it was saved.
			for s := 1; s <= upgradeSessions; s++ {
				w, err := m1.LoadContext(ctx, upgradeSession(s))
				require.NoError(t, err)
				var turns []driver.Turn
				for i := 1; i <= upgradeTurns; i++ {
					// Stored without message IDs or counts: read back with
					// derived IDs and counted tokens, as PrepareTurn makes them.
					turns = append(turns, prepared(t, upgradeTurn(s, i)))
				}
				assert.Equal(t, wantWindow(turns, upgradeTurns), w, "session %d", s)
			}

			// The columns were added (version, and tokens of the
			// conversation model), nothing else changed, and the history
			// records them after the previous release's entry.
			assert.Equal(t, []string{"id", "turn_count", "created_at", "updated_at", "version", "tokens", "counted", "tenant", "user_id", "title", "metadata", "fork_of", "fork_turn", "base", "base_seq"}, sessionColumns(t, db))
			after, err := db.Migrator().History(ctx, SessionsTable)
			require.NoError(t, err)
			if assert.Len(t, after, 2, "history of %s", SessionsTable) {
				assert.Equal(t, before[0], after[0], "the previous release's entry")
				q := "[\"`]?" // SQLite quotes with backticks here
				add := func(col string) string {
					return `ALTER TABLE ` + q + SessionsTable + q + ` ADD COLUMN ` + q + col + q + ` (BIGINT|INTEGER|SMALLINT) NOT NULL DEFAULT 0`
				}
				widen := ""
				if d.name == "pg" { // the key grew to hold a tenant: a varchar widened in place
					widen = `ALTER TABLE "` + SessionsTable + `" ALTER COLUMN "id" TYPE varchar\(320\);\n`
				}
				addText := func(col, rest string) string {
					return `ALTER TABLE ` + q + SessionsTable + q + ` ADD COLUMN ` + q + col + q + ` ` + rest
				}
				assert.Regexp(t, `(?i)^`+widen+add("version")+`;\n`+add("tokens")+`;\n`+add("counted")+`;\n`+
					addText("tenant", `varchar\(64\) NOT NULL DEFAULT ''`)+`;\n`+addText("user_id", `varchar\(255\) NOT NULL DEFAULT ''`)+`;\n`+
					addText("title", `text NOT NULL DEFAULT ''`)+`;\n`+addText("metadata", `text`)+`;\n`+
					// The fork columns (fork.go), and their partial indexes.
					addText("fork_of", `varchar\(320\) NOT NULL DEFAULT ''`)+`;\n`+addText("fork_turn", `varchar\(128\) NOT NULL DEFAULT ''`)+`;\n`+
					addText("base", `varchar\(320\) NOT NULL DEFAULT ''`)+`;\n`+add("base_seq")+`;\n`+
					`CREATE INDEX IF NOT EXISTS `+q+SessionsTable+`_owner_idx`+q+` .* WHERE user_id <> '';\n`+
					`CREATE INDEX IF NOT EXISTS `+q+SessionsTable+`_tenant_idx`+q+` .*;\n`+
					`CREATE INDEX IF NOT EXISTS `+q+SessionsTable+`_fork_idx`+q+` .* WHERE fork_of <> '';\n`+
					`CREATE INDEX IF NOT EXISTS `+q+SessionsTable+`_base_idx`+q+` .* WHERE base <> ''$`, after[1].Statements, "the upgrade")
				assert.NotEmpty(t, after[1].Checksum, "the upgrade is recorded as complete")
				assert.NotEqual(t, before[0].Checksum, after[1].Checksum)
			}
			// A session row written before the column existed is not
			// reported as missing.
			w, v, err := b.Load(ctx, upgradeSession(1), driver.WindowQuery{MaxTurns: 10, Known: driver.UnknownVersion})
			require.NoError(t, err)
			assert.Equal(t, upgradeTurns, w.TurnCount)
			assert.NotEqual(t, driver.NoSession, v, "version of a session the previous release wrote")
			assert.Equal(t, [2]int{upgradeSessions, 2 * upgradeSessions * upgradeTurns}, tableCounts(t, b), "rows after the upgrade")

			// A new turn goes on after the old ones, and a second memory sees
			// what the first saved.
			extra := driver.Turn{ID: "s2-t6", User: "question 6", Agent: "answer 6", Metadata: map[string]any{"new": true}}
			require.NoError(t, m1.SaveTurn(ctx, upgradeSession(2), extra))
			w1, err := m1.LoadContext(ctx, upgradeSession(2))
			require.NoError(t, err)
			assert.Equal(t, upgradeTurns+1, w1.TurnCount)
			if assert.Len(t, w1.Turns, upgradeTurns+1) {
				assert.Equal(t, withSeq([]driver.Turn{prepared(t, upgradeTurn(2, 1))}, 1)[0], w1.Turns[0])
				last := w1.Turns[upgradeTurns]
				assert.Equal(t, []any{extra.ID, extra.User, extra.Agent, extra.Metadata}, []any{last.ID, last.User, last.Agent, last.Metadata})
			}
			w2, err := m2.LoadContext(ctx, upgradeSession(2))
			require.NoError(t, err)
			assert.Equal(t, w1, w2, "a second memory's window")
			info, err := b.SessionInfo(ctx, upgradeSession(2))
			require.NoError(t, err)
			assert.Equal(t, upgradeTurns+1, info.TurnCount)

			// A clear through one memory is seen by the other, whose cached
			// window of the session is then stale; other sessions stay.
			_, err = m2.LoadContext(ctx, upgradeSession(1))
			require.NoError(t, err)
			require.NoError(t, m1.Clear(ctx, upgradeSession(1)))
			w2, err = m2.LoadContext(ctx, upgradeSession(1))
			require.NoError(t, err)
			assert.Equal(t, driver.Window{}, w2, "session 1 after a clear, through the other memory")
			_, err = b.SessionInfo(ctx, upgradeSession(1))
			assert.ErrorIs(t, err, driver.ErrSessionNotFound)
			w2, err = m2.LoadContext(ctx, upgradeSession(3))
			require.NoError(t, err)
			assert.Equal(t, upgradeTurns, w2.TurnCount, "session 3 after session 1 was cleared")
			assert.Equal(t, [2]int{upgradeSessions - 1, 2 * (2*upgradeTurns + 1)}, tableCounts(t, b), "rows at the end")

			// Opened again, the database is up to date: no more history.
			require.NoError(t, db.Close())
			db2, err := dataflow.Open(ctx, url)
			require.NoError(t, err)
			defer db2.Close()
			b2, err := NewDataFlowBackend(db2)
			require.NoError(t, err)
			w, err = readWindow(ctx, b2, upgradeSession(2), 10)
			require.NoError(t, err)
			assert.Equal(t, w1, w, "session 2 read by a new process")
			again, err := db2.Migrator().History(ctx, SessionsTable)
			require.NoError(t, err)
			assert.Len(t, again, 2, "history after a second open")
		})
	}
}
