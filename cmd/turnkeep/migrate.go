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
	summary: "Show whether each table and the search index is up to date, missing or changed, and when it was last migrated. " +
		"Exits 1 when anything is not up to date. Changes nothing.",
	example: "turnkeep migrate status --db sqlite:///chat.db",
	run:     runMigrateStatus,
}

var migratePlanCmd = &command{
	name: "migrate plan",
	summary: "Print the SQL that 'migrate up' would run, search index included (destructive statements commented out). " +
		"Changes nothing: for a SQLite file that does not exist yet, prints the plan of a new one and creates no file.",
	example: "turnkeep migrate plan --db 'postgres://app@db:5432/chat?sslmode=disable'",
	run:     runMigratePlan,
}

var migrateUpCmd = &command{
	name: "migrate up",
	summary: "Create or upgrade the tables and the search index. Destructive changes (a dropped column, a changed type) " +
		"are refused, and nothing is applied, unless --force.",
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

// plans returns the plan of every table, in the order of s.b.Models(),
// and then that of the search index.
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
	return append(out, p), nil
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
	if search := ps[len(ps)-1]; !search.Empty() {
		// Planned missing, and EnsureSearchIndex returned: created (by
		// this run, or by another process at the same moment).
		for _, st := range search.Steps {
			applied = append(applied, stepJSON{Kind: string(st.Kind), Name: st.Name, SQL: st.SQL})
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
		return writeJSON(a.stdout, map[string]any{"applied": applied})
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
