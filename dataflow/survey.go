package dataflow

import (
	"context"

	"github.com/turnkeep/turnkeep/migrate"
)

// A Surveyed is a table handle Survey checks: any *Table[T].
type Surveyed interface {
	state() *tableState
}

func (t *Table[T]) state() *tableState {
	if t == nil {
		return nil
	}
	return t.st
}

// What a survey found of a table, kept for its next ensure run.
const (
	surveyNone    int32 = iota // no survey: the run checks
	surveyCurrent              // up to date: the run has nothing to do
	surveyStale                // missing or changed: the run migrates, re-checking under the lock
)

// Survey makes the first-use checks of several tables and the state of
// data upgrades in one look at the catalog and the migration history (two
// statements; see migrate.Migrator.Survey), where each table's first use
// and each upgrade's check would take two each. What it finds of each
// table not yet ready is kept for that table's next ensure run (its first
// use), which then runs no check of its own: none at all when the table
// is up to date, only the migration (which checks again under the lock)
// when it is not. Tables are surveyed only with auto-migration on and
// neither WithExistingSchemaMode nor WithSkipTableChecks set; the
// upgrades always. It returns the upgrades' states, in their order.
func (db *DB) Survey(ctx context.Context, upgrades []migrate.Upgrade, tables ...Surveyed) ([]migrate.UpgradeState, error) {
	if err := db.usable(); err != nil {
		return nil, err
	}
	var states []*tableState
	var models []migrate.Model
	if db.cfg.autoMigrate && !db.cfg.existingSchema && !db.cfg.skipChecks {
		for _, t := range tables {
			st := t.state()
			if st == nil {
				return nil, errNotOpen
			}
			if !st.ens.Ready() {
				states = append(states, st)
				models = append(models, st.model)
			}
		}
	}
	if len(models) == 0 && len(upgrades) == 0 {
		return nil, nil
	}
	s, err := db.mig.Survey(ctx, models, upgrades)
	if err != nil {
		return nil, err
	}
	for i, st := range states {
		found := surveyStale
		if s.Tables[i] == migrate.UpToDate {
			found = surveyCurrent
		}
		st.surveyed.Store(found)
	}
	return s.Upgrades, nil
}
