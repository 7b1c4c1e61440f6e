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

// An Upgrade is a one-time data upgrade: rows written by an earlier release
// brought up to the current schema's form, once, so that the hot path
// reads and writes one form only. It runs under the migration lock, in
// batches, each a transaction of its own within the caller's deadline; a
// batch's work is committed with it, so a run cut off resumes where it
// stopped. When a batch reports none left, the upgrade is recorded done in
// the history table (as table "upgrade:" + Name), and never runs again.
type Upgrade struct {
	// Name identifies the upgrade in the history; give a new upgrade a
	// new name.
	Name string
	// Note says what it does, for status and plans.
	Note string
	// Tables are the tables it reads and writes. Where one is missing
	// there is nothing to upgrade.
	Tables []string
	// Batch brings up to date, in tx, what it can from cursor on ("" at
	// first), stopping once time passes until (the caller's deadline, or
	// the run's batch bound). It returns where the next batch starts, how
	// many rows it brought up to date, and whether none is left. It must
	// leave rows it did not reach as they are, and find the rows it did
	// not reach again from any cursor, so that a run may start over.
	Batch func(ctx context.Context, tx UpgradeTx, cursor string, until time.Time) (next string, rows int64, done bool, err error)
}

// UpgradeTx runs an upgrade batch's statements in the transaction that
// holds the migration lock. Statements take ? placeholders, rewritten for
// the dialect; arguments are bound by the driver.
type UpgradeTx struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
	}
	rebind func(string) string
}

// ExecContext runs a statement that returns no rows.
func (t UpgradeTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.q.ExecContext(ctx, t.rebind(query), args...)
}

// QueryContext runs a query.
func (t UpgradeTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.q.QueryContext(ctx, t.rebind(query), args...)
}

// PrepareContext prepares a statement run many times in the batch (on
// SQLite each ExecContext would otherwise parse it again); the caller
// closes it before the batch returns.
func (t UpgradeTx) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return t.q.PrepareContext(ctx, t.rebind(query))
}

// DefaultUpgradeBatch bounds one batch of an upgrade run by RunUpgrade
// when the caller's deadline does not bound it sooner: the time the
// migration lock is held at once, during which writers wait.
const DefaultUpgradeBatch = 500 * time.Millisecond

// minUpgradeBatch is the least time a batch is given, so that a run whose
// caller's deadline is all but spent still makes progress.
const minUpgradeBatch = 20 * time.Millisecond

// UpgradeOptions tune RunUpgrade.
type UpgradeOptions struct {
	// MaxBatch bounds each batch (DefaultUpgradeBatch when 0), besides
	// ctx's deadline: the time the migration lock is held at once, during
	// which other writers of the tables (an earlier release's, during a
	// rolling deploy) wait.
	MaxBatch time.Duration
	// NoDDL never creates the history table: where it is missing the run
	// is not recorded done, so the next run scans again (a DB that may
	// not change the schema; `turnkeep migrate up` records it). Nor does
	// it create the lock's table on the MySQL family: where that is
	// missing, a pending upgrade fails with ErrTableMissing.
	NoDDL bool
}

// UpgradeResult reports an upgrade run.
type UpgradeResult struct {
	Ran      bool          // batches ran (false: recorded done already, or nothing to upgrade)
	Batches  int           // transactions committed
	Rows     int64         // rows brought up to date, as the batches counted them
	Duration time.Duration // the run's time
}

// upgradeKey is the history's table_name of u's record.
func upgradeKey(u Upgrade) string { return "upgrade:" + u.Name }

// upgradeDone is the checksum recorded when an upgrade finished.
const upgradeDone = "done"

// UpgradePending is the cheap test at first use: one catalog query for the
// upgrade's tables and the history table and, when they exist, one lookup
// of its record through the history's (table_name, id) index. It is true
// when the tables exist and the upgrade is not recorded done. It never
// writes.
func (m *Migrator) UpgradePending(ctx context.Context, u Upgrade) (bool, error) {
	if err := checkUpgrade(u); err != nil {
		return false, err
	}
	return m.upgradePending(ctx, m.db, u)
}

func checkUpgrade(u Upgrade) error {
	if u.Name == "" || u.Batch == nil || len(u.Tables) == 0 {
		return fmt.Errorf("%w: an upgrade needs a name, tables and a batch", ErrInvalidOption)
	}
	return nil
}

func (m *Migrator) upgradePending(ctx context.Context, c bun.IConn, u Upgrade) (bool, error) {
	exist, err := m.existing(ctx, c, append([]string{m.history}, u.Tables...)...)
	if err != nil {
		return false, fmt.Errorf("check upgrade %q: %w", u.Name, err)
	}
	for _, t := range u.Tables {
		if !exist[t] {
			return false, nil
		}
	}
	if !exist[m.history] {
		return true, nil
	}
	var n int
	err = c.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM `+m.ident(m.history)+
		` WHERE table_name = ? AND checksum = ? LIMIT 1) x`, upgradeKey(u), upgradeDone).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("check upgrade %q: %w", u.Name, err)
	}
	return n == 0, nil
}

// UpgradePlan returns what RunUpgrade would do, changing nothing: a plan
// whose Table is "upgrade:" + u.Name, whose Exists reports whether the
// upgrade is recorded done, and whose one UpgradeData step (when it is
// pending) names it and says what it does.
func (m *Migrator) UpgradePlan(ctx context.Context, u Upgrade) (*Plan, error) {
	pending, err := m.UpgradePending(ctx, u)
	if err != nil {
		return nil, err
	}
	p := &Plan{Table: upgradeKey(u), Checksum: upgradeDone}
	h, err := m.History(ctx, upgradeKey(u))
	if err != nil {
		return nil, err
	}
	p.Exists = len(h) > 0
	if pending {
		p.Steps = []Step{{Kind: UpgradeData, Table: strings.Join(u.Tables, ", "), Name: u.Name, Note: u.Note}}
	}
	return p, nil
}

// RunUpgrade runs u to the end unless it is recorded done: batch after
// batch, each a transaction holding the migration lock, each bounded by
// opts.MaxBatch and by ctx's deadline, and records it done. A run
// that ctx ends returns ctx's error with the batches committed so far,
// which a later run does not repeat. Processes that run it at once take
// turns batch by batch; one records it done, and the others then stop.
func (m *Migrator) RunUpgrade(ctx context.Context, u Upgrade, opts UpgradeOptions) (UpgradeResult, error) {
	if err := checkUpgrade(u); err != nil {
		return UpgradeResult{}, err
	}
	start := time.Now()
	res := UpgradeResult{}
	pending, err := m.upgradePending(ctx, m.db, u)
	if err != nil || !pending {
		return res, err
	}
	maxBatch := opts.MaxBatch
	if maxBatch <= 0 {
		maxBatch = DefaultUpgradeBatch
	}
	maxBatch = max(maxBatch, minUpgradeBatch)
	cursor := ""
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("upgrade %q: %w", u.Name, err)
		}
		finished, ran := false, false
		var rows int64
		lock := m.locked
		if opts.NoDDL {
			lock = m.lockedNoDDL
		}
		err := lock(ctx, func(c bun.IConn) error {
			record := !opts.NoDDL
			if record {
				if err := m.createHistory(ctx, c); err != nil {
					return err
				}
			} else {
				exist, err := m.existing(ctx, c, m.history)
				if err != nil {
					return err
				}
				record = exist[m.history]
			}
			pending, err := m.upgradePending(ctx, c, u)
			if err != nil || !pending {
				finished = true // another process finished it
				return err
			}
			start := time.Now()
			until := start.Add(maxBatch)
			if d, ok := ctx.Deadline(); ok && d.Before(until) {
				until = d
				if least := start.Add(minUpgradeBatch); until.Before(least) {
					until = least
				}
			}
			tx, err := upgradeTx(c, m.d.Rebind)
			if err != nil {
				return err
			}
			next, n, done, err := u.Batch(ctx, tx, cursor, until)
			if err != nil {
				return fmt.Errorf("upgrade %q: %w", u.Name, err)
			}
			cursor, rows, ran = next, n, true
			if !done {
				return nil
			}
			finished = true
			if !record {
				m.log.WarnContext(ctx, "migrate: upgrade done but not recorded: no history table, and no DDL allowed", "upgrade", u.Name)
				return nil
			}
			_, err = c.ExecContext(ctx, `INSERT INTO `+m.ident(m.history)+
				` (table_name, checksum, statements, applied_at, duration_ms) VALUES (?, ?, ?, ?, ?)`,
				upgradeKey(u), upgradeDone, u.Note, time.Now().UTC(), time.Since(start).Milliseconds())
			if err != nil {
				return fmt.Errorf("record upgrade %q: %w", u.Name, err)
			}
			return nil
		})
		if err != nil {
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				// The driver may report only that the transaction is
				// gone (database/sql rolls it back when ctx ends).
				err = fmt.Errorf("upgrade %q: %w: %w", u.Name, cerr, err)
			}
			return res, err
		}
		if ran { // committed
			res.Rows, res.Batches, res.Ran = res.Rows+rows, res.Batches+1, true
		}
		if finished {
			res.Duration = time.Since(start)
			if res.Ran {
				m.log.InfoContext(ctx, "migrate: upgraded", "upgrade", u.Name, "rows", res.Rows, "batches", res.Batches, "duration", res.Duration)
			}
			return res, nil
		}
	}
}

// upgradeTx is the driver's own transaction under c, so that the batch's
// arguments are bound rather than formatted into its text by bun.
func upgradeTx(c bun.IConn, rebind func(string) string) (UpgradeTx, error) {
	switch c := c.(type) {
	case bun.Conn:
		return UpgradeTx{q: c.Conn, rebind: rebind}, nil
	case bun.Tx:
		return UpgradeTx{q: c.Tx, rebind: rebind}, nil
	}
	return UpgradeTx{}, errors.New("upgrade: unexpected connection type")
}
