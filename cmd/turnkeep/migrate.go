package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/migrate"
)

var migrateStatusCmd = &command{
	name:    "migrate status",
	summary: "Show whether each table is up to date, missing or changed, and when it was last migrated. Changes nothing.",
	example: "turnkeep migrate status --db sqlite:///chat.db",
	run:     runMigrateStatus,
}

var migratePlanCmd = &command{
	name:    "migrate plan",
	summary: "Print the SQL that 'migrate up' would run (destructive statements commented out). Changes nothing.",
	example: "turnkeep migrate plan --db 'postgres://app@db:5432/chat?sslmode=disable'",
	run:     runMigratePlan,
}

var migrateUpCmd = &command{
	name: "migrate up",
	summary: "Create or upgrade the tables and the search index. Destructive changes (a dropped column, a changed type)\n" +
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
	if o.json {
		return writeJSON(a.stdout, out)
	}
	t := newTable(a.stdout, "TABLE", "STATUS", "MIGRATIONS", "LAST MIGRATED")
	for _, ts := range out {
		last := "-"
		if ts.LastMigrated != nil {
			last = formatTime(*ts.LastMigrated)
		}
		t.row(ts.Table, ts.Status, ts.Migrations, last)
	}
	return t.flush()
}

// plans returns the plan of every table.
func plans(ctx context.Context, s *store) ([]*migrate.Plan, error) {
	var out []*migrate.Plan
	for _, m := range s.b.Models() {
		p, err := s.db.Migrator().Plan(ctx, m)
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, p)
	}
	return out, nil
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
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
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
		return fmt.Errorf("refusing %d destructive change(s): %s; nothing applied (see 'turnkeep migrate plan'; --force applies them)",
			len(destructive), strings.Join(destructive, ", "))
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
	if len(notApplied) > 0 {
		// migrate.Apply re-plans only when the model's checksum is not
		// recorded: a column added behind its back (the table otherwise up
		// to date) is planned, but never dropped. Say so, rather than
		// report success.
		return fmt.Errorf("%d destructive change(s) not applied: %s (the migration history records these tables as up to date for this model; drop it by hand)",
			len(notApplied), strings.Join(notApplied, ", "))
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
	fmt.Fprintf(a.stdout, "%d statement(s) applied\n", len(applied))
	return nil
}
