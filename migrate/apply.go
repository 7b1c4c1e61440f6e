package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// Status is what Check found.
type Status int

// The results of Check.
const (
	UpToDate Status = iota // the table exists and the history holds the model's checksum
	Missing                // the table does not exist
	Changed                // the table exists but its recorded checksum differs or is absent
)

func (s Status) String() string {
	switch s {
	case UpToDate:
		return "up to date"
	case Missing:
		return "missing"
	default:
		return "changed"
	}
}

// Result is what Apply or Ensure did.
type Result struct {
	Status  Status // what the check under the lock found
	Plan    *Plan  // nil when the table was up to date
	Applied []Step // the statements that ran
	Skipped []Step // destructive steps left alone (not forced)
}

// HistoryEntry is one row of the history table.
type HistoryEntry struct {
	ID         int64
	Table      string
	Checksum   string // of the model; empty when destructive steps were skipped
	Statements string
	AppliedAt  time.Time
	Duration   time.Duration
}

// Check is the cheap first-use test: one catalog query for the table and
// the history table, and, if both exist, one lookup of the last recorded
// checksum. It never writes.
func (m *Migrator) Check(ctx context.Context, model Model) (Status, error) {
	t, err := m.table(model)
	if err != nil {
		return Changed, err
	}
	return m.check(ctx, m.db, t.Name, checksum(m.d, t, model))
}

func (m *Migrator) check(ctx context.Context, c bun.IConn, table, sum string) (Status, error) {
	exist, err := m.existing(ctx, c, table, m.history)
	if err != nil {
		return Changed, fmt.Errorf("check table %q: %w", table, err)
	}
	tableExists, historyExists := exist[table], exist[m.history]
	if !tableExists {
		return Missing, nil
	}
	if !historyExists {
		return Changed, nil
	}
	var last string
	err = c.QueryRowContext(ctx,
		`SELECT checksum FROM `+m.ident(m.history)+` WHERE table_name = ? ORDER BY id DESC LIMIT 1`, table).Scan(&last)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Changed, nil
	case err != nil:
		return Changed, fmt.Errorf("check history of %q: %w", table, err)
	case last == sum:
		return UpToDate, nil
	default:
		return Changed, nil
	}
}

// existing reports which of the named tables exist in the current schema:
// one catalog query.
func (m *Migrator) existing(ctx context.Context, c bun.IConn, names ...string) (map[string]bool, error) {
	rows, err := c.QueryContext(ctx, m.d.Catalog().Tables, bun.List(names))
	if err != nil {
		return nil, err
	}
	exist := make(map[string]bool, len(names))
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, err
		}
		exist[name] = true
	}
	return exist, closeRows(rows)
}

// Ensure runs Check and, unless the table is up to date, Apply.
func (m *Migrator) Ensure(ctx context.Context, model Model, force bool) (*Result, error) {
	status, err := m.Check(ctx, model)
	if err != nil {
		return nil, err
	}
	if status == UpToDate {
		return &Result{Status: UpToDate}, nil
	}
	return m.Apply(ctx, model, force)
}

// Apply brings the model's table in line under a cross-process lock:
// re-check, plan, run the additive steps (and the destructive ones if
// force), and record the checksum in the history table, all in one
// transaction. If another process got there first, it does nothing.
//
// When destructive steps are skipped the table does not match the model,
// so the model's checksum is not recorded: Check keeps reporting Changed,
// each later Ensure re-plans (and logs the skipped steps again), and a
// forced run still finds them.
func (m *Migrator) Apply(ctx context.Context, model Model, force bool) (*Result, error) {
	t, err := m.table(model)
	if err != nil {
		return nil, err
	}
	var res *Result
	err = m.locked(ctx, func(c bun.IConn) error {
		if err := m.setup(ctx, c); err != nil {
			return err
		}
		if err := m.createHistory(ctx, c); err != nil {
			return err
		}
		sum := checksum(m.d, t, model)
		status, err := m.check(ctx, c, t.Name, sum)
		if err != nil {
			return err
		}
		res = &Result{Status: status}
		if status == UpToDate {
			return nil
		}
		ti, err := m.inspect(ctx, c, t.Name)
		if err != nil {
			return err
		}
		plan, err := m.diff(t, model, ti)
		if err != nil {
			return err
		}
		res.Plan = plan
		start := time.Now()
		var stmts []string
		for _, s := range plan.Steps {
			if s.Destructive && !force {
				res.Skipped = append(res.Skipped, s)
				m.log.WarnContext(ctx, "migrate: destructive change skipped (not forced)",
					"table", s.Table, "kind", string(s.Kind), "name", s.Name, "note", s.Note)
				continue
			}
			if s.SQL == "" {
				return fmt.Errorf("%w: %s %s.%s: %s", ErrDestructive, s.Kind, s.Table, s.Name, s.Note)
			}
			if _, err := c.ExecContext(ctx, s.SQL); err != nil {
				return fmt.Errorf("migrate %q: %s: %w", t.Name, s.Kind, err)
			}
			stmts = append(stmts, s.SQL)
			res.Applied = append(res.Applied, s)
		}
		// The model's checksum is recorded only when the table now matches
		// the model. With destructive steps skipped it does not: recording
		// the checksum would make Check report UpToDate, and a later forced
		// run would never see the difference. The additive statements that
		// did run are still recorded, with an empty checksum.
		recorded := sum
		if len(res.Skipped) > 0 {
			if len(stmts) == 0 {
				return nil
			}
			recorded = ""
		}
		_, err = c.ExecContext(ctx, `INSERT INTO `+m.ident(m.history)+
			` (table_name, checksum, statements, applied_at, duration_ms) VALUES (?, ?, ?, ?, ?)`,
			t.Name, recorded, strings.Join(stmts, ";\n"), time.Now().UTC(), time.Since(start).Milliseconds())
		if err != nil {
			return fmt.Errorf("record migration of %q: %w", t.Name, err)
		}
		if len(stmts) > 0 {
			m.log.InfoContext(ctx, "migrate: applied", "table", t.Name, "statements", len(stmts))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// locked runs fn in a transaction that holds the migration lock (see
// sqlcore.Dialect.Locked).
func (m *Migrator) locked(ctx context.Context, fn func(bun.IConn) error) error {
	return m.d.Locked(ctx, m.db, m.lockKey(), fn)
}

// lockedNoDDL is locked for a run that may not change the schema: it never
// creates the lock's table (see sqlcore.Dialect.LockedNoDDL).
func (m *Migrator) lockedNoDDL(ctx context.Context, fn func(bun.IConn) error) error {
	return m.d.LockedNoDDL(ctx, m.db, m.lockKey(), fn)
}

// lockKey names the migration lock of the migrator's history table.
func (m *Migrator) lockKey() string { return "turnkeep.migrate:" + m.history + ":" }

func (m *Migrator) createHistory(ctx context.Context, c bun.IConn) error {
	id, ts := m.d.HistoryColumns()
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS ` + m.ident(m.history) + ` (` + id + `,
	table_name VARCHAR(255) NOT NULL,
	checksum VARCHAR(64) NOT NULL,
	statements TEXT NOT NULL,
	applied_at ` + ts + ` NOT NULL,
	duration_ms BIGINT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS ` + m.ident(m.history+"_table_idx") + ` ON ` + m.ident(m.history) + ` (table_name, id)`,
	}
	if m.ddl.history != nil {
		stmts = m.ddl.history(m)
	}
	for _, s := range stmts {
		if _, err := c.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("create history table: %w", err)
		}
	}
	return nil
}

// History returns the recorded migrations of a table, oldest first. A
// database without a history table has none.
func (m *Migrator) History(ctx context.Context, table string) ([]HistoryEntry, error) {
	exist, err := m.existing(ctx, m.db, m.history)
	if err != nil {
		return nil, fmt.Errorf("read history of %q: %w", table, err)
	}
	if !exist[m.history] {
		return nil, nil
	}
	rows, err := m.db.QueryContext(ctx, `SELECT id, table_name, checksum, statements, applied_at, duration_ms FROM `+
		m.ident(m.history)+` WHERE table_name = ? ORDER BY id`, table)
	if err != nil {
		return nil, fmt.Errorf("read history of %q: %w", table, err)
	}
	var out []HistoryEntry
	for rows.Next() {
		var e HistoryEntry
		var ms int64
		if err := rows.Scan(&e.ID, &e.Table, &e.Checksum, &e.Statements, anyTime{&e.AppliedAt}, &ms); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read history of %q: %w", table, err)
		}
		e.Duration = time.Duration(ms) * time.Millisecond
		out = append(out, e)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read history of %q: %w", table, err)
	}
	return out, nil
}
