package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/migrate"
)

var migrateStatusCmd = &command{
	name: "migrate status",
	summary: "Show whether each table, the search index and each data upgrade is up to date, missing, changed or pending, " +
		"and when it was last migrated. Exits 1 when anything is not up to date. Changes nothing.",
	example: "turnkeep migrate status --db sqlite:///chat.db",
	run:     runMigrateStatus,
}

var migratePlanCmd = &command{
	name: "migrate plan",
	summary: "Print the SQL that 'migrate up' would run, search index included (destructive statements commented out), " +
		"and the data upgrades it would run. " +
		"Changes nothing: for a SQLite file that does not exist yet, prints the plan of a new one and creates no file.",
	example: "turnkeep migrate plan --db 'postgres://app@db:5432/chat?sslmode=disable'",
	run:     runMigratePlan,
}

var migrateUpCmd = &command{
	name: "migrate up",
	summary: "Create or upgrade the tables and the search index, then run the pending data upgrades (rows of an earlier " +
		"release brought up to date, in batches; see docs/upgrade.md), so that the first use of the new release has none to run. " +
		"Destructive changes (a dropped column, a changed type) are refused, and nothing is applied, unless --force.",
	example: "turnkeep migrate up --db sqlite:///chat.db\nturnkeep migrate up --force   # also drop columns the tables no longer have",
	flags: func(fs *flag.FlagSet, o *options) {
		fs.BoolVar(&o.force, "force", false, "apply destructive changes too")
	},
	run: runMigrateUp,
}

type tableStatus struct {
	Table        string     `json:"table"`
	Status       string     `json:"status"`
	Migrations   int        `json:"migrations"`
	LastMigrated *time.Time `json:"last_migrated,omitempty"`
}

func runMigrateStatus(ctx context.Context, a *app, o *options, _ []string) error {
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	mig := s.db.Migrator()
	var out []tableStatus
	for _, m := range s.b.Models() {
		p, err := mig.Plan(ctx, m)
		if err != nil {
			return dbErr(err)
		}
		st, err := mig.Check(ctx, m)
		if err != nil {
			return dbErr(err)
		}
		h, err := mig.History(ctx, p.Table)
		if err != nil {
			return dbErr(err)
		}
		ts := tableStatus{Table: p.Table, Status: st.String(), Migrations: len(h)}
		if st == migrate.Changed && p.Empty() {
			ts.Status = "up to date (not recorded)"
		}
		if len(h) > 0 {
			at := h[len(h)-1].AppliedAt.UTC()
			ts.LastMigrated = &at
		}
		out = append(out, ts)
	}
	search, err := s.b.SearchIndexPlan(ctx)
	if err != nil {
		return dbErr(err)
	}
	ts := tableStatus{Table: search.Table, Status: migrate.UpToDate.String()}
	if !search.Empty() {
		ts.Status = migrate.Missing.String()
	}
	out = append(out, ts)
	ups, err := upgradePlans(ctx, s)
	if err != nil {
		return err
	}
	for _, p := range ups {
		ts := tableStatus{Table: p.Table, Status: migrate.UpToDate.String()}
		switch h, err := mig.History(ctx, p.Table); {
		case err != nil:
			return dbErr(err)
		case len(h) > 0:
			ts.Migrations = len(h)
			at := h[len(h)-1].AppliedAt.UTC()
			ts.LastMigrated = &at
		}
		switch {
		case !p.Empty():
			ts.Status = "pending"
		case !p.Exists:
			ts.Status = "up to date (nothing to upgrade)"
		}
		out = append(out, ts)
	}
	if o.json {
		err = writeJSON(a.stdout, out)
	} else {
		t := newTable(a.stdout, "TABLE", "STATUS", "MIGRATIONS", "LAST MIGRATED")
		for _, ts := range out {
			last := "-"
			if ts.LastMigrated != nil {
				last = formatTime(*ts.LastMigrated)
			}
			t.row(ts.Table, ts.Status, ts.Migrations, last)
		}
		err = t.flush()
	}
	if err != nil {
		return err
	}
	for _, ts := range out {
		if !strings.HasPrefix(ts.Status, migrate.UpToDate.String()) {
			return errNotUpToDate
		}
	}
	return nil
}

// errNotUpToDate is migrate status's answer when a table or the search
// index is not up to date: exit 1, so that a deploy script can ask.
var errNotUpToDate = errors.New("the schema is not up to date: see 'turnkeep migrate plan', run 'turnkeep migrate up'")

// upgradePlans returns the plan of every data upgrade of the backend.
func upgradePlans(ctx context.Context, s *store) ([]*migrate.Plan, error) {
	var out []*migrate.Plan
	for _, u := range s.b.Upgrades() {
		p, err := s.db.Migrator().UpgradePlan(ctx, u)
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, p)
	}
	return out, nil
}

// plans returns the plan of every table, in the order of s.b.Models(),
// then that of the search index, then those of the data upgrades.
func plans(ctx context.Context, s *store) ([]*migrate.Plan, error) {
	var out []*migrate.Plan
	for _, m := range s.b.Models() {
		p, err := s.db.Migrator().Plan(ctx, m)
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, p)
	}
	p, err := s.b.SearchIndexPlan(ctx)
	if err != nil {
		return nil, dbErr(err)
	}
	ups, err := upgradePlans(ctx, s)
	if err != nil {
		return nil, err
	}
	return append(append(out, p), ups...), nil
}

type stepJSON struct {
	Kind        string `json:"kind"`
	Name        string `json:"name,omitempty"`
	SQL         string `json:"sql,omitempty"`
	Destructive bool   `json:"destructive"`
	Note        string `json:"note,omitempty"`
}

type planJSON struct {
	Table  string     `json:"table"`
	Exists bool       `json:"exists"`
	Steps  []stepJSON `json:"steps"`
}

func plansJSON(ps []*migrate.Plan) []planJSON {
	out := []planJSON{}
	for _, p := range ps {
		pj := planJSON{Table: p.Table, Exists: p.Exists, Steps: []stepJSON{}}
		for _, s := range p.Steps {
			pj.Steps = append(pj.Steps, stepJSON{Kind: string(s.Kind), Name: s.Name, SQL: s.SQL, Destructive: s.Destructive, Note: s.Note})
		}
		out = append(out, pj)
	}
	return out
}

func runMigratePlan(ctx context.Context, a *app, o *options, _ []string) error {
	// A SQLite file that does not exist yet: plan against an empty
	// database in memory, which is what 'up' would start from, rather
	// than create the file.
	url, newFile := o.db, ""
	if path, ok := sqlitePath(o.db); ok {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			url, newFile = "sqlite:///:memory:", path
		}
	}
	s, err := open(ctx, url, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	ps, err := plans(ctx, s)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(a.stdout, plansJSON(ps))
	}
	if newFile != "" {
		fmt.Fprintf(a.stdout, "-- no SQLite database at %s yet: 'migrate up' creates it, then runs this\n", newFile)
	}
	empty := true
	for _, p := range ps {
		if p.Empty() {
			continue
		}
		empty = false
		fmt.Fprintf(a.stdout, "-- %s\n%s", p.Table, p.SQL())
	}
	if empty {
		fmt.Fprintln(a.stdout, "-- nothing to do: the schema is up to date")
	}
	return nil
}

func runMigrateUp(ctx context.Context, a *app, o *options, _ []string) error {
	// Tables are migrated here, explicitly; the engine's own first-use
	// migration only runs for the search index, after them.
	s, err := open(ctx, o.db, o.tenant, migrateSchema)
	if err != nil {
		return err
	}
	defer s.Close()
	ps, err := plans(ctx, s)
	if err != nil {
		return err
	}
	var destructive []string
	for _, p := range ps {
		for _, st := range p.Destructive() {
			destructive = append(destructive, fmt.Sprintf("%s %s.%s", st.Kind, st.Table, st.Name))
		}
	}
	if len(destructive) > 0 && !o.force {
		return fmt.Errorf("refusing %s: %s; nothing applied (see 'turnkeep migrate plan'; --force applies them)",
			plural(len(destructive), "destructive change"), strings.Join(destructive, ", "))
	}
	var (
		applied    []stepJSON
		notApplied []string
	)
	for i, m := range s.b.Models() {
		res, err := s.db.Migrator().Apply(ctx, m, o.force)
		if err != nil {
			return dbErr(err)
		}
		done := map[string]bool{}
		for _, st := range res.Applied {
			applied = append(applied, stepJSON{Kind: string(st.Kind), Name: st.Name, SQL: st.SQL, Destructive: st.Destructive})
			done[st.SQL] = true
		}
		for _, st := range ps[i].Steps {
			if !done[st.SQL] && st.Destructive {
				notApplied = append(notApplied, fmt.Sprintf("%s %s.%s", st.Kind, st.Table, st.Name))
			}
		}
	}
	if err := s.b.EnsureSearchIndex(ctx); err != nil {
		return dbErr(err)
	}
	if search := ps[len(s.b.Models())]; !search.Empty() {
		// Planned missing, and EnsureSearchIndex returned: created (by
		// this run, or by another process at the same moment).
		for _, st := range search.Steps {
			applied = append(applied, stepJSON{Kind: string(st.Kind), Name: st.Name, SQL: st.SQL})
		}
	}
	// The data upgrades last: they need the tables' new columns, and the
	// search index to index old messages into.
	ups, err := s.b.RunUpgrades(ctx)
	if err != nil {
		return dbErr(err)
	}
	var upgraded []upgradeJSON
	for i, u := range s.b.Upgrades() {
		if i < len(ups) && ups[i].Ran {
			upgraded = append(upgraded, upgradeJSON{Name: u.Name, Rows: ups[i].Rows, Batches: ups[i].Batches, DurationMS: ups[i].Duration.Milliseconds()})
		}
	}
	if len(notApplied) > 0 {
		// migrate.Apply re-plans only when the model's checksum is not
		// recorded: a column added behind its back (the table otherwise up
		// to date) is planned, but never dropped. Say so, rather than
		// report success.
		return fmt.Errorf("%s not applied: %s (the migration history records these tables as up to date for this model; drop it by hand)",
			plural(len(notApplied), "destructive change"), strings.Join(notApplied, ", "))
	}
	if o.json {
		if applied == nil {
			applied = []stepJSON{}
		}
		if upgraded == nil {
			upgraded = []upgradeJSON{}
		}
		return writeJSON(a.stdout, map[string]any{"applied": applied, "upgraded": upgraded})
	}
	for _, u := range upgraded {
		fmt.Fprintf(a.stdout, "upgraded: %s: %s in %d batch(es), %s\n", u.Name, plural(u.Rows, "row"), u.Batches,
			time.Duration(u.DurationMS)*time.Millisecond)
	}
	if len(applied) == 0 {
		fmt.Fprintln(a.stdout, "the schema is up to date: nothing applied")
		return nil
	}
	for _, st := range applied {
		fmt.Fprintf(a.stdout, "applied: %s;\n", st.SQL)
	}
	fmt.Fprintf(a.stdout, "%s applied\n", plural(len(applied), "statement"))
	return nil
}

// upgradeJSON is a data upgrade 'migrate up' ran.
type upgradeJSON struct {
	Name       string `json:"name"`
	Rows       int64  `json:"rows"`
	Batches    int    `json:"batches"`
	DurationMS int64  `json:"duration_ms"`
}
