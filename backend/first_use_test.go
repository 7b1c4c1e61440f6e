package backend

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A process's first use of a database that is up to date (its tables
// migrated, its data upgrade recorded done) runs two statements before
// the operation's own, whatever the operation: one catalog query for the
// tables it needs and the migration history, and one read of the history
// (the tables' checksums and the upgrade's record; dataflow.DB.Survey).
// No DDL, no migration lock, no scan of the sessions. Both name the
// history table. Before the survey a load ran eight: a catalog query and
// a history read for the upgrade, for each table, and for the upgrade
// again; a save two more for the erased table. A save on SQLite also
// checks its search index (the FTS5 table, its secure-delete option and
// the queue's trigger: two catalog statements and one read).
func TestFirstUseStatements(t *testing.T) {
	ctx := context.Background()
	const (
		load    = `^WITH RECURSIVE h AS \(SELECT s\.id, `
		upsert  = `^INSERT INTO turnkeep_sessions `
		insert  = `^INSERT INTO turnkeep_messages `
		config  = `^SELECT v FROM turnkeep_search_config WHERE k = 'secure-delete'$`
		saveOne = `^WITH o AS \(`
		saveMy  = `^SET @tk_seq = NULL, `
	)
	saved := 0
	ops := []struct {
		name    string
		run     func(b *DataFlowBackend) error
		data    map[string][]string // by dialect, regexps of the operation's statements
		catalog map[string]int      // by dialect, catalog statements besides the survey's
		inTx    bool
	}{
		{name: "LoadWindow", run: func(b *DataFlowBackend) error {
			w, err := readWindow(ctx, b, "s", 10)
			if err == nil && len(w.Turns) != 1 {
				t.Errorf("first load: %d turns; want 1", len(w.Turns))
			}
			return err
		}, data: map[string][]string{"sqlite": {load}, "pg": {load}, "mysql": {load}}},
		{name: "SessionInfo", run: func(b *DataFlowBackend) error {
			_, err := b.SessionInfo(ctx, "s")
			return err
		}, data: map[string][]string{"sqlite": {`^SELECT .* FROM "?turnkeep_sessions"? WHERE`}, "pg": {`^SELECT .* FROM "?turnkeep_sessions"? WHERE`}, "mysql": {"^SELECT .* FROM `?turnkeep_sessions`? WHERE"}}},
		{name: "SaveTurn", run: func(b *DataFlowBackend) error {
			saved++
			return storeTurn(ctx, b, fmt.Sprintf("new-%d", saved), driver.Turn{User: "u", Agent: "a"})
		}, data: map[string][]string{"sqlite": {config, upsert, insert}, "pg": {saveOne}, "mysql": {saveMy}},
			catalog: map[string]int{"sqlite": 2}, inTx: true},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		// An earlier process made the tables and saved a turn.
		db, _ := openDB(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "u", Agent: "a"}))
		require.NoError(t, db.Close())

		for _, o := range ops {
			t.Run(o.name, func(t *testing.T) {
				for round := range 2 { // the count is the same in every new process
					db, rec := openDB(t, url)
					b, err := NewDataFlowBackend(db)
					require.NoError(t, err)
					require.NoError(t, o.run(b))
					kinds := byKind(rec.take())
					assert.Len(t, kinds[kindHistory], 2, "round %d: the survey's statements: %q", round, kinds[kindHistory])
					assert.Len(t, kinds[kindCatalog], o.catalog[d.Name], "round %d: catalog statements besides the survey: %q", round, kinds[kindCatalog])
					assert.Empty(t, kinds[kindDDL], "round %d: DDL statements", round)
					// No migration lock: only the operation's own transaction.
					assertTxStatements(t, d.Name, o.inTx, false, kinds[kindTx])
					want := o.data[d.Name]
					if assert.Len(t, kinds[kindData], len(want), "round %d: the operation's statements: %q", round, kinds[kindData]) {
						for i, re := range want {
							assert.Regexp(t, regexp.MustCompile(`(?s)`+re), oneLine(kinds[kindData][i]), "round %d: statement %d", round, i)
						}
					}
					// Warm: nothing but the operation.
					require.NoError(t, o.run(b))
					kinds = byKind(rec.take())
					assert.Empty(t, kinds[kindHistory], "round %d, warm", round)
					assert.Empty(t, kinds[kindCatalog], "round %d, warm", round)
					wantWarm := len(want)
					if d.Name == "sqlite" && o.name == "SaveTurn" {
						wantWarm-- // the search index was checked
					}
					assert.Len(t, kinds[kindData], wantWarm, "round %d, warm: %q", round, kinds[kindData])
					require.NoError(t, db.Close())
				}
			})
		}
	})
}
