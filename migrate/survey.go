package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// A Survey is what one look at the catalog and the history found of
// several models and upgrades: the first-use checks of a program that
// uses them together, in two statements instead of two per model and
// upgrade.
type Survey struct {
	// Tables holds each model's status, by the models' order, as Check
	// reports it.
	Tables []Status
	// Upgrades holds each upgrade's state, by the upgrades' order.
	Upgrades []UpgradeState
}

// UpgradeState is what a survey found of an upgrade.
type UpgradeState int

// The states of an upgrade.
const (
	UpgradeNotApplicable UpgradeState = iota // one of its tables does not exist: nothing to upgrade (yet)
	UpgradeIsPending                         // its tables exist and it is not recorded done (UpgradePending is true)
	UpgradeDone                              // it is recorded done: it never runs again
)

// Survey reports, as Check does for each model and UpgradePending does
// for each upgrade, but in two statements: one catalog query for every
// table named and the history table, and, when the history exists, one
// read of it (a lookup through its (table_name, id) index per model and
// upgrade). It never writes.
func (m *Migrator) Survey(ctx context.Context, models []Model, upgrades []Upgrade) (Survey, error) {
	sums := make([]string, len(models))
	names := make([]string, len(models))
	for i, model := range models {
		t, err := m.table(model)
		if err != nil {
			return Survey{}, err
		}
		names[i], sums[i] = t.Name, checksum(m.d, t, model)
	}
	all := append([]string{m.history}, names...)
	for _, u := range upgrades {
		if err := checkUpgrade(u); err != nil {
			return Survey{}, err
		}
		all = append(all, u.Tables...)
	}
	slices.Sort(all)
	exist, err := m.existing(ctx, m.db, slices.Compact(all)...)
	if err != nil {
		return Survey{}, fmt.Errorf("survey tables: %w", err)
	}
	s := Survey{Tables: make([]Status, len(models)), Upgrades: make([]UpgradeState, len(upgrades))}
	// What the history must answer: the last checksum of each existing
	// table, and whether each applicable upgrade is done.
	var q strings.Builder
	var args []any
	add := func(key int, where string, a ...any) {
		if q.Len() > 0 {
			q.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&q, "SELECT %d, (SELECT checksum FROM %s WHERE %s ORDER BY id DESC LIMIT 1)", key, m.ident(m.history), where)
		args = append(args, a...)
	}
	for i, name := range names {
		s.Tables[i] = Changed // no history, or no record: as check says
		if !exist[name] {
			s.Tables[i] = Missing
			continue
		}
		if exist[m.history] {
			add(i, "table_name = ?", name)
		}
	}
	for j, u := range upgrades {
		s.Upgrades[j] = UpgradeIsPending
		for _, t := range u.Tables {
			if !exist[t] {
				s.Upgrades[j] = UpgradeNotApplicable
			}
		}
		if s.Upgrades[j] == UpgradeIsPending && exist[m.history] {
			add(len(models)+j, "table_name = ? AND checksum = ?", upgradeKey(u), upgradeDone)
		}
	}
	if len(args) == 0 {
		return s, nil
	}
	rows, err := m.db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return Survey{}, fmt.Errorf("survey history: %w", err)
	}
	for rows.Next() {
		var key int
		var sum sql.NullString
		if err := rows.Scan(&key, &sum); err != nil {
			rows.Close()
			return Survey{}, fmt.Errorf("survey history: %w", err)
		}
		switch {
		case key < len(models):
			if sum.Valid && sum.String == sums[key] {
				s.Tables[key] = UpToDate
			}
		case sum.Valid:
			s.Upgrades[key-len(models)] = UpgradeDone
		}
	}
	if err := closeRows(rows); err != nil {
		return Survey{}, fmt.Errorf("survey history: %w", err)
	}
	return s, nil
}
