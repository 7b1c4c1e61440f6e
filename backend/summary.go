package backend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

// SummariesTable holds one row per session with a summary (or a lease to
// write one).
const SummariesTable = "turnkeep_summaries"

// SummaryRow is a session's summary as stored, in a table of its own
// rather than in the session row: every save rewrites the session row,
// and a summary of a few kilobytes there would cost its pages on every
// save. The row also holds the lease of the process folding turns into
// it (LeaseOwner until LeaseUntil, Unix nanoseconds), so that across
// processes one range of turns is folded once.
type SummaryRow struct {
	bun.BaseModel `bun:"table:turnkeep_summaries"`

	ID         string    `bun:"id,pk,type:varchar(320)"` // the session's key
	Text       string    `bun:"text,notnull,type:text,default:''"`
	Turns      int64     `bun:"turns,notnull,default:0"` // the session's first Turns turns are folded into Text
	Tokens     int64     `bun:"tokens,notnull,default:0"`
	UpdatedAt  time.Time `bun:"updated_at,notnull"`
	LeaseOwner string    `bun:"lease_owner,notnull,type:varchar(64),default:''"`
	LeaseUntil int64     `bun:"lease_until,notnull,default:0"`
}

var _ driver.SummaryStore = (*DataFlowBackend)(nil)

// summaryState is the backend's part for summaries.
type summaryState struct {
	table      *dataflow.Table[SummaryRow]
	loadWindow *dataflow.Stmt // loadWindow with the summary's columns first
	loadBudget *dataflow.Stmt // loadBudget with the summary's columns first
	lease      *dataflow.Stmt
	write      *dataflow.Stmt
	bump       *dataflow.Stmt
	release    *dataflow.Stmt
	drop       *dataflow.Stmt
	del        *dataflow.Stmt
	turns      *dataflow.Stmt
	put        *dataflow.Stmt
}

// initSummaries registers the summaries table and makes its statements;
// window and budget are the load statements (see windowReads).
//
// The load statements with a summary are the window's load statement
// with four columns more, each a scalar subquery of the summaries table
// by primary key, evaluated only on the row of the newest turn's first
// message (or on the session row alone): still one statement, one round
// trip, and the text crosses the wire once.
func (b *DataFlowBackend) initSummaries(window, budget string) error {
	var err error
	s := &b.summary
	if s.table, err = dataflow.Register[SummaryRow](b.db); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	one := `m.seq IS NULL OR (m.seq = s.turn_count AND m.pos = 0)`
	col := func(expr string) string {
		return `CASE WHEN ` + one + ` THEN (SELECT ` + expr + ` FROM ` + SummariesTable + ` x WHERE x.id = s.id) END, `
	}
	cols := col("x.text") + col("x.turns") + col("x.tokens") + col(b.db.TimeColumn("x.updated_at"))
	withSummary := func(q string) string {
		// The window statements select loadColumns after their CTEs,
		// in every part of a UNION (chainRead).
		return strings.ReplaceAll(q, loadColumns, "SELECT "+cols+strings.TrimPrefix(loadColumns, "SELECT "))
	}
	s.loadWindow = b.db.NewReadStmt(withSummary(window), b.sessions, b.messages, s.table)
	s.loadBudget = b.db.NewReadStmt(withSummary(budget), b.sessions, b.messages, s.table)
	s.lease = b.db.NewStmt(b.form("summary/lease", `INSERT INTO `+SummariesTable+` (id, text, turns, tokens, updated_at, lease_owner, lease_until)
SELECT `+b.cast("?", "VARCHAR")+`, '', 0, 0, `+b.cast("?", "TIMESTAMPTZ")+`, `+b.cast("?", "VARCHAR")+`, `+b.cast("?", "BIGINT")+`
WHERE EXISTS (SELECT 1 FROM `+SessionsTable+` WHERE id = `+b.cast("?", "VARCHAR")+`)
ON CONFLICT (id) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
WHERE `+SummariesTable+`.lease_until < `+b.cast("?", "BIGINT")+`
RETURNING text, turns, tokens, `+b.db.TimeColumn("updated_at")), s.table, b.sessions)
	s.write = b.db.NewStmt(`UPDATE `+SummariesTable+` SET text = ?, turns = ?, tokens = ?, updated_at = ?, lease_owner = '', lease_until = 0
WHERE id = ? AND lease_owner = ? AND turns = ?`, s.table)
	s.bump = b.db.NewStmt(`UPDATE `+SessionsTable+` SET version = version + 1 WHERE id = ?`, b.sessions)
	s.release = b.db.NewStmt(`UPDATE `+SummariesTable+` SET lease_owner = '', lease_until = 0 WHERE id = ? AND lease_owner = ?`, s.table)
	s.del = b.db.NewStmt(`DELETE FROM `+SummariesTable+` WHERE id = ?`, s.table)
	s.drop = b.db.NewStmt(`DELETE FROM `+SummariesTable+` WHERE id = ? AND lease_owner = ? AND turns = 0`, s.table)
	s.turns = b.db.NewReadStmt(b.chainRead("summary/turns", `, CAST(? AS BIGINT) AS lo, CAST(? AS BIGINT) AS hi`, "h.lo", "h.lo", "h.hi"), b.sessions, b.messages)
	s.put = b.db.NewStmt(b.form("summary/put", `INSERT INTO `+SummariesTable+` (id, text, turns, tokens, updated_at, lease_owner, lease_until)
SELECT `+b.cast("?", "VARCHAR")+`, `+b.cast("?", "TEXT")+`, `+b.cast("?", "BIGINT")+`, `+b.cast("?", "BIGINT")+`, `+b.cast("?", "TIMESTAMPTZ")+`, '', 0
WHERE EXISTS (SELECT 1 FROM `+SessionsTable+` WHERE id = `+b.cast("?", "VARCHAR")+`)
ON CONFLICT (id) DO UPDATE SET text = excluded.text, turns = excluded.turns, tokens = excluded.tokens,
	updated_at = excluded.updated_at, lease_owner = '', lease_until = 0`), s.table, b.sessions)
	return nil
}

// loadSummary runs the load statement with the summary.
func (b *DataFlowBackend) loadSummary(ctx context.Context, sessionID string, q driver.WindowQuery) (driver.Window, driver.Version, error) {
	var rows *sql.Rows
	var err error
	if q.TokenBudget > 0 {
		rows, err = b.summary.loadBudget.Query(ctx, int64(q.Known)-1, q.MaxTurns, q.TokenBudget, sessionID)
	} else {
		rows, err = b.summary.loadWindow.Query(ctx, int64(q.Known)-1, q.MaxTurns, sessionID)
	}
	if errors.Is(err, dataflow.ErrTableMissing) {
		if ok, _ := b.summaries(ctx); !ok {
			// An earlier release's database, auto-migration off: no
			// summaries table, so no summary.
			q.Summary = false
			return b.load(ctx, sessionID, q)
		}
	}
	if err != nil {
		return driver.Window{}, 0, err
	}
	var (
		text          sql.NullString
		turns, tokens sql.NullInt64
		at            dataflow.Time
		sum           driver.Summary
	)
	w, v, err := scanWindow(rows, q, func() {
		if turns.Valid {
			sum = driver.Summary{Text: text.String, Turns: int(turns.Int64), Tokens: int(tokens.Int64), UpdatedAt: at.Time}
		}
	}, &text, &turns, &tokens, &at)
	if err != nil {
		return driver.Window{}, 0, err
	}
	if sum.Turns > 0 {
		w.Summary = &sum
	}
	return w, v, nil
}

// summaries reports whether the summaries table is there to delete from,
// ensuring it as every use does: a database of an earlier release opened
// with auto-migration off has none, and so no summary to delete.
func (b *DataFlowBackend) summaries(ctx context.Context) (bool, error) {
	err := b.summary.table.Ready(ctx)
	if errors.Is(err, dataflow.ErrTableMissing) {
		return false, nil
	}
	return err == nil, err
}

// erasing returns the tables a destructive transaction ensures: tables
// and, when it is there, the summaries table.
func (b *DataFlowBackend) erasing(ctx context.Context, tables ...dataflow.Readier) (bool, []dataflow.Readier, error) {
	ok, err := b.summaries(ctx)
	if ok {
		tables = append(tables, b.summary.table)
	}
	return ok, tables, err
}

// deleteSummaryTx deletes the session's summary (and lease), by
// equality on its key: a clear and a replacement take it with the turns.
func (b *DataFlowBackend) deleteSummaryTx(ctx context.Context, tx *dataflow.Tx, key string) error {
	_, err := b.summary.del.ExecTx(ctx, tx, key)
	return err
}

// deleteSummariesTx deletes the summaries (and leases) of the sessions of
// keys: a clear, a replacement and a deletion take them with the turns.
func (b *DataFlowBackend) deleteSummariesTx(ctx context.Context, tx *dataflow.Tx, keys []string) error {
	in := strings.TrimSuffix(strings.Repeat("?, ", len(keys)), ", ")
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	del := b.stmt(fmt.Sprintf("delsummaries/%d", len(keys)), func() *dataflow.Stmt {
		return b.db.NewStmt(`DELETE FROM `+SummariesTable+` WHERE id IN (`+in+`)`, b.summary.table)
	})
	_, err := del.ExecTx(ctx, tx, args...)
	return err
}

// LeaseSummary implements driver.SummaryStore: one statement, an upsert
// that changes the lease only where it expired.
func (b *DataFlowBackend) LeaseSummary(ctx context.Context, key, owner string, until time.Time) (driver.Summary, bool, error) {
	if err := b.check(key); err != nil {
		return driver.Summary{}, false, err
	}
	at := now()
	var s driver.Summary
	var ok bool
	// The session row's lock first, so that the lease is ordered with a
	// clear or a deletion of the session: after one, it finds no session
	// and inserts nothing; before one, the row it makes goes with it.
	err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		s, ok = driver.Summary{}, false
		rows, err := b.lockRow.QueryTx(ctx, tx, key)
		if err != nil {
			return err
		}
		found := rows.Next()
		if err := rows.Close(); err != nil || !found {
			return err
		}
		rows, err = b.summary.lease.QueryTx(ctx, tx, key, at, owner, until.UnixNano(), key, at.UnixNano())
		if err != nil {
			return err
		}
		var turns, tokens int64
		var upd dataflow.Time
		// scanOne: a MySQL form yields its row from its last result.
		switch err := scanOne(rows, &s.Text, &turns, &tokens, &upd); {
		case errors.Is(err, sql.ErrNoRows):
			return nil // another holds the lease
		case err != nil:
			return err
		}
		s.Turns, s.Tokens, s.UpdatedAt, ok = int(turns), int(tokens), upd.Time, true
		return nil
	}, b.sessions, b.summary.table)
	if err != nil {
		return driver.Summary{}, false, fmt.Errorf("backend: lease summary: %w", err)
	}
	return s, ok, nil
}

// WriteSummary implements driver.SummaryStore: in one transaction, the
// guarded update of the summary row and, when it changed it, a new
// version of the session.
func (b *DataFlowBackend) WriteSummary(ctx context.Context, key, owner string, prev int, s driver.Summary) (bool, error) {
	if err := b.check(key); err != nil {
		return false, err
	}
	var ok bool
	err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		// The session row's lock first, in the order every write of the
		// session takes its locks.
		rows, err := b.lockRow.QueryTx(ctx, tx, key)
		if err != nil {
			return err
		}
		found := rows.Next()
		if err := rows.Close(); err != nil || !found {
			return err
		}
		res, err := b.summary.write.ExecTx(ctx, tx, s.Text, s.Turns, s.Tokens, s.UpdatedAt.UTC().Truncate(time.Microsecond), key, owner, prev)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		ok = true
		_, err = b.summary.bump.ExecTx(ctx, tx, key)
		return err
	}, b.sessions, b.summary.table)
	if err != nil {
		return false, b.writeOutcome(ctx, "WriteSummary", fmt.Errorf("backend: write summary: %w", err))
	}
	return ok, nil
}

// ReleaseSummary implements driver.SummaryStore.
func (b *DataFlowBackend) ReleaseSummary(ctx context.Context, key, owner string) error {
	if err := b.check(key); err != nil {
		return err
	}
	err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		// A lease that never wrote leaves no row behind.
		if _, err := b.summary.drop.ExecTx(ctx, tx, key, owner); err != nil {
			return err
		}
		_, err := b.summary.release.ExecTx(ctx, tx, key, owner)
		return err
	}, b.summary.table)
	if err != nil {
		return fmt.Errorf("backend: release summary: %w", err)
	}
	return nil
}

// SummaryTurns implements driver.SummaryStore: one range scan of the
// session's messages by sequence.
func (b *DataFlowBackend) SummaryTurns(ctx context.Context, key string, after, through, limit int) ([]driver.Turn, error) {
	if err := b.check(key); err != nil {
		return nil, err
	}
	if limit < 1 || after < 0 {
		return nil, fmt.Errorf("backend: summary turns: %w: after %d, limit %d (want after >= 0, limit >= 1)", driver.ErrInvalidQuery, after, limit)
	}
	through = min(through, after+limit) // an empty range reads nothing, in one statement as any other
	if err := b.upgraded(ctx, nil); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	var w driver.Window
	err := b.readWhole(ctx, func() (bool, error) { // a turn missed would never be folded in
		rows, err := b.summary.turns.Query(ctx, int64(after), int64(through), key)
		if err != nil {
			return false, err
		}
		w, _, err = scanWindow(rows, driver.WindowQuery{MaxTurns: limit, Known: driver.UnknownVersion}, nil)
		return pageWhole(w, int64(after), int64(through), int64(limit)), err
	})
	if err != nil {
		return nil, fmt.Errorf("backend: summary turns: %w", err)
	}
	return w.Turns, nil
}

// PutSummary implements driver.SummaryStore.
func (b *DataFlowBackend) PutSummary(ctx context.Context, key string, s driver.Summary) error {
	if err := b.check(key); err != nil {
		return err
	}
	err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		rows, err := b.lockRow.QueryTx(ctx, tx, key) // ordered with a clear or deletion, as LeaseSummary
		if err != nil {
			return err
		}
		found := rows.Next()
		if err := rows.Close(); err != nil || !found {
			return err
		}
		if s.Turns < 1 {
			if err := b.deleteSummaryTx(ctx, tx, key); err != nil {
				return err
			}
		} else if _, err := b.summary.put.ExecTx(ctx, tx, key, s.Text, s.Turns, s.Tokens, s.UpdatedAt.UTC().Truncate(time.Microsecond), key); err != nil {
			return err
		}
		_, err = b.summary.bump.ExecTx(ctx, tx, key)
		return err
	}, b.sessions, b.summary.table)
	if err != nil {
		return fmt.Errorf("backend: put summary: %w", err)
	}
	return nil
}
