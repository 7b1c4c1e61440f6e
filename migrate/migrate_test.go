package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/migrate"
)

// Three versions of one table, as an application would ship them.
type noteV1 struct {
	bun.BaseModel `bun:"table:mt_notes"`

	ID    int64  `bun:"id,pk,autoincrement"`
	Title string `bun:"title,notnull"`
	Body  string `bun:"body"`
}

// noteV2 adds a nullable column and NOT NULL columns of several types.
type noteV2 struct {
	bun.BaseModel `bun:"table:mt_notes"`

	ID     int64     `bun:"id,pk,autoincrement"`
	Title  string    `bun:"title,notnull"`
	Body   string    `bun:"body"`
	Tag    string    `bun:"tag"`
	Score  int       `bun:"score,notnull"`
	Pinned bool      `bun:"pinned,notnull"`
	Seen   time.Time `bun:"seen,notnull"`
}

// noteV3 drops Body.
type noteV3 struct {
	bun.BaseModel `bun:"table:mt_notes"`

	ID     int64     `bun:"id,pk,autoincrement"`
	Title  string    `bun:"title,notnull"`
	Tag    string    `bun:"tag"`
	Score  int       `bun:"score,notnull"`
	Pinned bool      `bun:"pinned,notnull"`
	Seen   time.Time `bun:"seen,notnull"`
}

const titleIdx = "mt_notes_title_idx"

var (
	v1     = migrate.Model{Value: (*noteV1)(nil)}
	v1Idx  = migrate.Model{Value: (*noteV1)(nil), Indexes: []migrate.Index{{Name: titleIdx, Columns: []string{"title"}}}}
	v2     = migrate.Model{Value: (*noteV2)(nil)}
	v3     = migrate.Model{Value: (*noteV3)(nil)}
	noteTb = "mt_notes"
)

func TestPlanOnFreshDatabaseIsDryRun(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)

		plan, err := e.m.Plan(ctx, v1)
		require.NoError(t, err)
		assert.Equal(t, noteTb, plan.Table)
		assert.False(t, plan.Exists)
		require.Equal(t, []migrate.StepKind{migrate.CreateTable}, kinds(plan.Steps))
		assert.False(t, plan.Empty())
		assert.Empty(t, plan.Destructive())
		sum, err := e.m.Checksum(v1)
		require.NoError(t, err)
		assert.Equal(t, sum, plan.Checksum)

		script := plan.SQL()
		assert.Contains(t, script, "CREATE TABLE")
		assert.Contains(t, script, noteTb)
		assert.True(t, strings.HasSuffix(script, ";\n"), "script %q; want a trailing ;\\n", script)

		assert.Empty(t, writes(e.rec.take()), "Plan must not write")
		ti, err := e.m.Inspect(ctx, noteTb)
		require.NoError(t, err)
		assert.False(t, ti.Exists, "Plan created the table")

		plan, err = e.m.Plan(ctx, v1Idx)
		require.NoError(t, err)
		assert.Equal(t, []migrate.StepKind{migrate.CreateTable, migrate.CreateIndex}, kinds(plan.Steps))
		assert.Contains(t, plan.SQL(), titleIdx)
		ti, err = e.m.Inspect(ctx, noteTb)
		require.NoError(t, err)
		assert.False(t, ti.Exists, "Plan created the table")
	})
}

func TestEnsureCreatesTableIndexAndHistory(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)

		res, err := e.m.Ensure(ctx, v1Idx, false)
		require.NoError(t, err)
		assert.Equal(t, migrate.Missing, res.Status)
		require.NotNil(t, res.Plan)
		assert.Equal(t, []migrate.StepKind{migrate.CreateTable, migrate.CreateIndex}, kinds(res.Applied))
		assert.Empty(t, res.Skipped)

		ti, err := e.m.Inspect(ctx, noteTb)
		require.NoError(t, err)
		require.True(t, ti.Exists)
		assert.Equal(t, []string{"id", "title", "body"}, columnNames(ti))
		assert.Contains(t, ti.Indexes, titleIdx)

		hist, err := e.m.History(ctx, noteTb)
		require.NoError(t, err)
		require.Len(t, hist, 1)
		sum, err := e.m.Checksum(v1Idx)
		require.NoError(t, err)
		assert.Equal(t, noteTb, hist[0].Table)
		assert.Equal(t, sum, hist[0].Checksum)
		assert.Contains(t, hist[0].Statements, "CREATE TABLE")
		assert.Contains(t, hist[0].Statements, "CREATE INDEX")
		assert.WithinDuration(t, time.Now(), hist[0].AppliedAt, time.Minute)
		assert.GreaterOrEqual(t, hist[0].Duration, time.Duration(0))

		e.rec.take()
		status, err := e.m.Check(ctx, v1Idx)
		require.NoError(t, err)
		assert.Equal(t, migrate.UpToDate, status)
		stmts := e.rec.take()
		assert.Len(t, stmts, 2, "Check on an up-to-date table: got %q; want one catalog query and one history lookup", stmts)
		assert.Empty(t, writes(stmts))

		res, err = e.m.Ensure(ctx, v1Idx, false)
		require.NoError(t, err)
		assert.Equal(t, migrate.UpToDate, res.Status)
		assert.Nil(t, res.Plan)
		assert.Empty(t, res.Applied)
		assert.Len(t, e.rec.take(), 2, "Ensure on an up-to-date table runs only Check")

		// The table is usable through bun.
		_, err = e.db.NewInsert().Model(&noteV1{Title: "t", Body: "b"}).Exec(ctx)
		require.NoError(t, err)
	})
}

func TestRestartWithUnchangedModelRunsNoDDL(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)
		_, err := e.m.Ensure(ctx, v1Idx, false)
		require.NoError(t, err)
		_, err = e.db.NewInsert().Model(&noteV1{Title: "kept"}).Exec(ctx)
		require.NoError(t, err)

		for i := range 2 {
			e.reopen(t)
			res, err := e.m.Ensure(ctx, v1Idx, false)
			require.NoError(t, err)
			assert.Equal(t, migrate.UpToDate, res.Status, "restart %d", i)
			assert.Empty(t, res.Applied)
			stmts := e.rec.take()
			assert.Len(t, stmts, 2, "restart %d: got %q", i, stmts)
			assert.Empty(t, writes(stmts), "restart %d ran DDL or wrote", i)
		}

		hist, err := e.m.History(ctx, noteTb)
		require.NoError(t, err)
		assert.Len(t, hist, 1)
		var rows []noteV1
		require.NoError(t, e.db.NewSelect().Model(&rows).Scan(ctx))
		require.Len(t, rows, 1)
		assert.Equal(t, "kept", rows[0].Title)
	})
}

func TestNewFieldAddsColumnAndKeepsRows(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)
		_, err := e.m.Ensure(ctx, v1, false)
		require.NoError(t, err)
		_, err = e.db.NewInsert().Model(&[]noteV1{{Title: "a", Body: "x"}, {Title: "b", Body: "y"}}).Exec(ctx)
		require.NoError(t, err)

		e.reopen(t)
		res, err := e.m.Ensure(ctx, v2, false)
		require.NoError(t, err)
		assert.Equal(t, migrate.Changed, res.Status)
		assert.Empty(t, res.Skipped)
		var added []string
		for _, s := range res.Applied {
			assert.Equal(t, migrate.AddColumn, s.Kind)
			assert.False(t, s.Destructive)
			assert.Contains(t, s.SQL, "ADD COLUMN")
			added = append(added, s.Name)
		}
		assert.Equal(t, []string{"tag", "score", "pinned", "seen"}, added)
		for _, s := range res.Applied {
			if s.Name != "tag" {
				assert.Contains(t, s.SQL, "NOT NULL DEFAULT", "step %s", s.Name)
			}
		}

		var rows []noteV2
		require.NoError(t, e.db.NewSelect().Model(&rows).Order("id").Scan(ctx))
		require.Len(t, rows, 2, "existing rows lost")
		for i, want := range []string{"a", "b"} {
			assert.Equal(t, want, rows[i].Title)
			assert.Equal(t, "", rows[i].Tag)
			assert.Equal(t, 0, rows[i].Score)
			assert.False(t, rows[i].Pinned)
		}
		assert.Equal(t, "x", rows[0].Body)

		_, err = e.db.NewInsert().Model(&noteV2{Title: "c", Tag: "t", Score: 5, Pinned: true, Seen: time.Now()}).Exec(ctx)
		require.NoError(t, err)
		// A writer still on the old model works against the new table.
		_, err = e.db.NewInsert().Model(&noteV1{Title: "old writer"}).Exec(ctx)
		require.NoError(t, err)
		n, err := e.db.NewSelect().Model((*noteV2)(nil)).Count(ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 4, n)

		hist, err := e.m.History(ctx, noteTb)
		require.NoError(t, err)
		require.Len(t, hist, 2)
		sum1, _ := e.m.Checksum(v1)
		sum2, _ := e.m.Checksum(v2)
		assert.Equal(t, sum1, hist[0].Checksum)
		assert.Equal(t, sum2, hist[1].Checksum)
		assert.Equal(t, 4, strings.Count(hist[1].Statements, "ADD COLUMN"), "statements %q", hist[1].Statements)
		assert.Less(t, hist[0].ID, hist[1].ID)

		status, err := e.m.Check(ctx, v2)
		require.NoError(t, err)
		assert.Equal(t, migrate.UpToDate, status)
		status, err = e.m.Check(ctx, v1)
		require.NoError(t, err)
		assert.Equal(t, migrate.Changed, status)
	})
}

func TestDroppedFieldIsSkippedUnlessForced(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)
		_, err := e.m.Ensure(ctx, v2, false)
		require.NoError(t, err)
		_, err = e.db.NewInsert().Model(&noteV2{Title: "a", Body: "keep", Seen: time.Now()}).Exec(ctx)
		require.NoError(t, err)

		for i := range 2 { // the second run is a restart: still skipped, still reported
			e.reopen(t)
			res, err := e.m.Ensure(ctx, v3, false)
			require.NoError(t, err)
			assert.Equal(t, migrate.Changed, res.Status, "run %d", i)
			assert.Empty(t, res.Applied, "run %d", i)
			require.Len(t, res.Skipped, 1, "run %d", i)
			s := res.Skipped[0]
			assert.Equal(t, migrate.DropColumn, s.Kind)
			assert.Equal(t, "body", s.Name)
			assert.True(t, s.Destructive)
			require.NotNil(t, res.Plan)
			assert.Equal(t, res.Skipped, res.Plan.Destructive())
			assert.Contains(t, res.Plan.SQL(), "-- destructive")
			assert.Contains(t, res.Plan.SQL(), "DROP COLUMN")
			for _, stmt := range writes(e.rec.take()) {
				assert.False(t, strings.HasPrefix(stmt, "ALTER") || strings.HasPrefix(stmt, "DROP"),
					"run %d changed the table: %s", i, stmt)
			}
			status, err := e.m.Check(ctx, v3)
			require.NoError(t, err)
			assert.Equal(t, migrate.Changed, status, "a table with skipped steps is not up to date")
		}

		ti, err := e.m.Inspect(ctx, noteTb)
		require.NoError(t, err)
		assert.Contains(t, columnNames(ti), "body", "column dropped without force")
		hist, err := e.m.History(ctx, noteTb)
		require.NoError(t, err)
		assert.Len(t, hist, 1, "a run that applied nothing recorded history")

		// The v3 model reads and writes the table with its extra column.
		_, err = e.db.NewInsert().Model(&noteV3{Title: "b", Seen: time.Now()}).Exec(ctx)
		require.NoError(t, err)
		var rows []noteV3
		require.NoError(t, e.db.NewSelect().Model(&rows).Order("id").Scan(ctx))
		require.Len(t, rows, 2)
		assert.Equal(t, "a", rows[0].Title)
		assert.Equal(t, "b", rows[1].Title)

		e.reopen(t)
		res, err := e.m.Ensure(ctx, v3, true)
		require.NoError(t, err)
		assert.Empty(t, res.Skipped)
		require.Len(t, res.Applied, 1)
		assert.Equal(t, migrate.DropColumn, res.Applied[0].Kind)

		ti, err = e.m.Inspect(ctx, noteTb)
		require.NoError(t, err)
		assert.NotContains(t, columnNames(ti), "body", "forced run did not drop the column")
		rows = nil
		require.NoError(t, e.db.NewSelect().Model(&rows).Scan(ctx))
		assert.Len(t, rows, 2, "rows lost by the drop")
		hist, err = e.m.History(ctx, noteTb)
		require.NoError(t, err)
		require.Len(t, hist, 2)
		sum3, _ := e.m.Checksum(v3)
		assert.Equal(t, sum3, hist[1].Checksum)
		assert.Contains(t, hist[1].Statements, "DROP COLUMN")
		status, err := e.m.Check(ctx, v3)
		require.NoError(t, err)
		assert.Equal(t, migrate.UpToDate, status)
	})
}

// A skipped destructive step next to an applied additive one: the column is
// added and recorded, but the model's checksum is not, so a forced run
// later still drops the column.
func TestPartialMigrationIsNotUpToDate(t *testing.T) {
	type before struct {
		bun.BaseModel `bun:"table:mt_partial"`
		ID            int64  `bun:"id,pk,autoincrement"`
		Old           string `bun:"old"`
	}
	type after struct {
		bun.BaseModel `bun:"table:mt_partial"`
		ID            int64  `bun:"id,pk,autoincrement"`
		New           string `bun:"new"`
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)
		_, err := e.m.Ensure(ctx, migrate.Model{Value: (*before)(nil)}, false)
		require.NoError(t, err)

		res, err := e.m.Ensure(ctx, migrate.Model{Value: (*after)(nil)}, false)
		require.NoError(t, err)
		assert.Equal(t, []migrate.StepKind{migrate.AddColumn}, kinds(res.Applied))
		assert.Equal(t, []migrate.StepKind{migrate.DropColumn}, kinds(res.Skipped))
		hist, err := e.m.History(ctx, "mt_partial")
		require.NoError(t, err)
		require.Len(t, hist, 2)
		assert.Contains(t, hist[1].Statements, "ADD COLUMN")
		assert.Empty(t, hist[1].Checksum, "a partial migration recorded the model's checksum")

		res, err = e.m.Ensure(ctx, migrate.Model{Value: (*after)(nil)}, true)
		require.NoError(t, err)
		assert.Equal(t, []migrate.StepKind{migrate.DropColumn}, kinds(res.Applied))
		ti, err := e.m.Inspect(ctx, "mt_partial")
		require.NoError(t, err)
		assert.Equal(t, []string{"id", "new"}, columnNames(ti))
	})
}

func TestTypeChangeIsDestructive(t *testing.T) {
	type numV1 struct {
		bun.BaseModel `bun:"table:mt_nums"`
		ID            int64 `bun:"id,pk"`
		N             int64 `bun:"n"`
	}
	type numV2 struct {
		bun.BaseModel `bun:"table:mt_nums"`
		ID            int64  `bun:"id,pk"`
		N             string `bun:"n"`
	}
	m1 := migrate.Model{Value: (*numV1)(nil)}
	m2 := migrate.Model{Value: (*numV2)(nil)}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)
		_, err := e.m.Ensure(ctx, m1, false)
		require.NoError(t, err)
		_, err = e.db.NewInsert().Model(&numV1{ID: 1, N: 42}).Exec(ctx)
		require.NoError(t, err)
		before, err := e.m.Inspect(ctx, "mt_nums")
		require.NoError(t, err)

		res, err := e.m.Ensure(ctx, m2, false)
		require.NoError(t, err)
		assert.Empty(t, res.Applied)
		require.Len(t, res.Skipped, 1)
		s := res.Skipped[0]
		assert.Equal(t, migrate.AlterType, s.Kind)
		assert.Equal(t, "n", s.Name)
		assert.True(t, s.Destructive)
		if e.pg() {
			assert.Contains(t, s.SQL, "ALTER COLUMN")
			assert.Contains(t, s.SQL, "TYPE")
		} else if e.mysql() {
			assert.Equal(t, "ALTER TABLE `mt_nums` MODIFY COLUMN `n` VARCHAR(255)", s.SQL)
		} else {
			assert.Empty(t, s.SQL, "SQLite cannot alter a type in place")
			assert.Contains(t, res.Plan.SQL(), "not supported")
		}
		after, err := e.m.Inspect(ctx, "mt_nums")
		require.NoError(t, err)
		assert.Equal(t, before.Columns, after.Columns, "type changed without force")

		res, err = e.m.Ensure(ctx, m2, true)
		if !e.pg() && !e.mysql() {
			require.ErrorIs(t, err, migrate.ErrDestructive)
			return
		}
		require.NoError(t, err)
		assert.Equal(t, []migrate.StepKind{migrate.AlterType}, kinds(res.Applied))
		ti, err := e.m.Inspect(ctx, "mt_nums")
		require.NoError(t, err)
		if e.mysql() {
			assert.Equal(t, "varchar(255)", ti.Columns[1].Type)
		} else {
			assert.Equal(t, "character varying", ti.Columns[1].Type)
		}
		var got numV2
		require.NoError(t, e.db.NewSelect().Model(&got).Where("id = ?", 1).Scan(ctx))
		assert.Equal(t, "42", got.N, "value lost by the type change")
	})
}

func TestChecksum(t *testing.T) {
	type uniq struct {
		bun.BaseModel `bun:"table:mt_notes"`
		ID            int64  `bun:"id,pk,autoincrement"`
		Title         string `bun:"title,notnull,unique"`
		Body          string `bun:"body"`
	}
	idx := func(ix ...migrate.Index) migrate.Model { return migrate.Model{Value: (*noteV1)(nil), Indexes: ix} }
	a := migrate.Index{Name: "a_idx", Columns: []string{"title"}}
	b := migrate.Index{Name: "b_idx", Columns: []string{"body"}}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newEnv(t, d)
		sum := func(m migrate.Model) string {
			t.Helper()
			s, err := e.m.Checksum(m)
			require.NoError(t, err)
			require.Len(t, s, 64)
			return s
		}
		base := sum(v1)
		assert.Equal(t, base, sum(v1), "not stable across calls")
		assert.Equal(t, base, sum(migrate.Model{Value: &noteV1{Title: "values do not count"}}))
		assert.Equal(t, sum(idx(a, b)), sum(idx(b, a)), "index order changed the checksum")

		distinct := map[string]string{"v1": base}
		for name, m := range map[string]migrate.Model{
			"added field":   v2,
			"dropped field": v3,
			"index":         idx(a),
			"index columns": idx(migrate.Index{Name: "a_idx", Columns: []string{"title", "body"}}),
			"unique index":  idx(migrate.Index{Name: "a_idx", Columns: []string{"title"}, Unique: true}),
			"index name":    idx(migrate.Index{Name: "c_idx", Columns: []string{"title"}}),
			"unique column": {Value: (*uniq)(nil)},
			"two indexes":   idx(a, b),
		} {
			s := sum(m)
			for other, os := range distinct {
				assert.NotEqual(t, os, s, "%s and %s have the same checksum", name, other)
			}
			distinct[name] = s
		}

		// The checksum does not depend on the connection: a restart agrees.
		e.reopen(t)
		assert.Equal(t, base, sum(v1))
		assert.Empty(t, e.rec.take(), "Checksum ran SQL")
	})
}

// Eight processes (separate connection pools) start at the same moment on a
// fresh database: all succeed, the table is created once, history has one
// row.
func TestConcurrentProcessesMigrateOnce(t *testing.T) {
	const procs = 8
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		for round := range 3 {
			t.Run(fmt.Sprint("round", round), func(t *testing.T) {
				ctx := ctxT(t)
				url := d.URL(t)
				migs := make([]*migrate.Migrator, procs)
				for i := range migs {
					m, err := migrate.New(openBun(t, url))
					require.NoError(t, err)
					migs[i] = m
				}
				var ok, applied atomic.Int32
				errs := make(chan error, procs)
				start := make(chan struct{})
				for _, m := range migs {
					go func() {
						<-start
						res, err := m.Ensure(ctx, v1Idx, false)
						if err == nil {
							ok.Add(1)
							if len(res.Applied) > 0 {
								applied.Add(1)
							}
						}
						errs <- err
					}()
				}
				close(start)
				deadline := time.After(90 * time.Second)
				for range procs {
					select {
					case err := <-errs:
						assert.NoError(t, err)
					case <-deadline:
						t.Fatal("Ensure hung")
					}
				}
				assert.EqualValues(t, procs, ok.Load())
				assert.EqualValues(t, 1, applied.Load(), "processes that ran DDL")
				hist, err := migs[0].History(ctx, noteTb)
				require.NoError(t, err)
				assert.Len(t, hist, 1)
				ti, err := migs[0].Inspect(ctx, noteTb)
				require.NoError(t, err)
				assert.Contains(t, ti.Indexes, titleIdx)
				for _, m := range migs {
					status, err := m.Check(ctx, v1Idx)
					require.NoError(t, err)
					assert.Equal(t, migrate.UpToDate, status)
				}
			})
		}
	})
}

// An invalid model is ErrInvalidModel from every entry point, before any
// SQL runs.
func TestInvalidModel(t *testing.T) {
	type empty struct{}
	type badEmbed struct {
		ID int64 `bun:"id,pk"`
		X  int   `bun:",embed"`
	}
	cases := map[string]migrate.Model{
		"nil value":          {},
		"not a struct":       {Value: 42},
		"pointer to int":     {Value: new(int)},
		"slice":              {Value: []noteV1{}},
		"no columns":         {Value: (*empty)(nil)},
		"malformed tag":      {Value: (*badEmbed)(nil)},
		"index column":       {Value: (*noteV1)(nil), Indexes: []migrate.Index{{Name: "x_idx", Columns: []string{"nope"}}}},
		"index go name":      {Value: (*noteV1)(nil), Indexes: []migrate.Index{{Name: "x_idx", Columns: []string{"Title"}}}},
		"index without name": {Value: (*noteV1)(nil), Indexes: []migrate.Index{{Columns: []string{"title"}}}},
		"index without cols": {Value: (*noteV1)(nil), Indexes: []migrate.Index{{Name: "x_idx"}}},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)
		for name, m := range cases {
			t.Run(name, func(t *testing.T) {
				_, err := e.m.Checksum(m)
				assert.ErrorIs(t, err, migrate.ErrInvalidModel, "Checksum")
				_, err = e.m.Check(ctx, m)
				assert.ErrorIs(t, err, migrate.ErrInvalidModel, "Check")
				_, err = e.m.Plan(ctx, m)
				assert.ErrorIs(t, err, migrate.ErrInvalidModel, "Plan")
				_, err = e.m.Ensure(ctx, m, true)
				assert.ErrorIs(t, err, migrate.ErrInvalidModel, "Ensure")
				_, err = e.m.Apply(ctx, m, true)
				assert.ErrorIs(t, err, migrate.ErrInvalidModel, "Apply")
				assert.Empty(t, e.rec.take(), "SQL ran for an invalid model")
			})
		}
	})
}

func TestNewAndOptions(t *testing.T) {
	_, err := migrate.New(nil)
	require.Error(t, err)
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		db := openBun(t, d.URL(t))
		_, err := migrate.New(db, migrate.WithHistoryTable(""))
		require.ErrorIs(t, err, migrate.ErrInvalidModel)

		m, err := migrate.New(db, migrate.WithHistoryTable("my_history"), migrate.WithLogger(nil))
		require.NoError(t, err)
		assert.Equal(t, "my_history", m.HistoryTable())
		hist, err := m.History(ctx, noteTb)
		require.NoError(t, err)
		assert.Empty(t, hist, "history of a fresh database")

		_, err = m.Ensure(ctx, v1, false)
		require.NoError(t, err)
		ti, err := m.Inspect(ctx, "my_history")
		require.NoError(t, err)
		assert.True(t, ti.Exists, "history table not created under its configured name")
		ti, err = m.Inspect(ctx, migrate.DefaultHistoryTable)
		require.NoError(t, err)
		assert.False(t, ti.Exists, "default history table created")
		hist, err = m.History(ctx, noteTb)
		require.NoError(t, err)
		assert.Len(t, hist, 1)
	})
}

// Every column type bun maps must compare equal to what the catalog
// reports, or every restart would see a spurious type change.
func TestNoSpuriousDiffAfterEnsure(t *testing.T) {
	type wide struct {
		bun.BaseModel `bun:"table:mt_wide"`

		ID      int64             `bun:"id,pk,autoincrement"`
		S       string            `bun:"s,notnull"`
		SP      *string           `bun:"sp"`
		I       int               `bun:"i"`
		I32     int32             `bun:"i32"`
		I16     int16             `bun:"i16"`
		U32     uint32            `bun:"u32"`
		B       bool              `bun:"b,notnull"`
		F64     float64           `bun:"f64"`
		F32     float32           `bun:"f32"`
		T       time.Time         `bun:"t,notnull,default:current_timestamp"`
		TP      *time.Time        `bun:"tp"`
		M       map[string]any    `bun:"m"`
		Raw     []byte            `bun:"raw"`
		List    []string          `bun:"list"`
		V100    string            `bun:"v100,type:varchar(100)"`
		Txt     string            `bun:"txt,type:text"`
		U       string            `bun:"u,unique"`
		Headers map[string]string `bun:"headers,type:jsonb"`
	}
	type composite struct {
		bun.BaseModel `bun:"table:mt_composite"`
		A             string `bun:"a,pk"`
		B             int64  `bun:"b,pk"`
		V             string `bun:"v"`
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)
		for _, m := range []migrate.Model{
			{Value: (*wide)(nil), Indexes: []migrate.Index{{Name: "mt_wide_s_i_idx", Columns: []string{"s", "i"}, Unique: true}}},
			{Value: (*composite)(nil)},
		} {
			_, err := e.m.Ensure(ctx, m, false)
			require.NoError(t, err)
			plan, err := e.m.Plan(ctx, m)
			require.NoError(t, err)
			assert.True(t, plan.Exists)
			assert.Empty(t, plan.Steps, "plan after ensure: %s", plan.SQL())
		}
	})
}

func TestCanceledContext(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		e := newEnv(t, d)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := e.m.Ensure(ctx, v1, false)
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.Canceled), "got %v; want context.Canceled", err)

		// Nothing was left half done: a live context migrates normally.
		res, err := e.m.Ensure(ctxT(t), v1, false)
		require.NoError(t, err)
		assert.Equal(t, migrate.Missing, res.Status)
	})
}

// Changing the columns or the uniqueness of an index under the same name
// replaces the index, in the same transaction as the history row.
func TestChangedIndexIsRecreated(t *testing.T) {
	model := func(ix migrate.Index) migrate.Model {
		return migrate.Model{Value: (*noteV1)(nil), Indexes: []migrate.Index{ix}}
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)
		steps := []struct {
			ix   migrate.Index
			want []migrate.StepKind
		}{
			{migrate.Index{Name: titleIdx, Columns: []string{"title"}}, []migrate.StepKind{migrate.CreateTable, migrate.CreateIndex}},
			{migrate.Index{Name: titleIdx, Columns: []string{"title", "body"}}, []migrate.StepKind{migrate.DropIndex, migrate.CreateIndex}},
			{migrate.Index{Name: titleIdx, Columns: []string{"title", "body"}, Unique: true}, []migrate.StepKind{migrate.DropIndex, migrate.CreateIndex}},
			{migrate.Index{Name: titleIdx, Columns: []string{"body", "title"}, Unique: true}, []migrate.StepKind{migrate.DropIndex, migrate.CreateIndex}},
		}
		for i, s := range steps {
			res, err := e.m.Ensure(ctx, model(s.ix), false)
			require.NoError(t, err, "step %d", i)
			assert.Equal(t, s.want, kinds(res.Applied), "step %d", i)
			assert.Empty(t, res.Skipped, "step %d", i)
			ti, err := e.m.Inspect(ctx, noteTb)
			require.NoError(t, err)
			var got *migrate.Index
			for j := range ti.IndexDefs {
				if ti.IndexDefs[j].Name == titleIdx {
					got = &ti.IndexDefs[j]
				}
			}
			require.NotNil(t, got, "step %d: index missing; have %v", i, ti.Indexes)
			assert.Equal(t, s.ix, *got, "step %d", i)
			plan, err := e.m.Plan(ctx, model(s.ix))
			require.NoError(t, err)
			assert.True(t, plan.Empty(), "step %d: plan after ensure: %s", i, plan.SQL())
		}
		hist, err := e.m.History(ctx, noteTb)
		require.NoError(t, err)
		assert.Len(t, hist, len(steps))

		// The unique index is enforced.
		_, err = e.db.NewInsert().Model(&noteV1{Title: "t", Body: "b"}).Exec(ctx)
		require.NoError(t, err)
		_, err = e.db.NewInsert().Model(&noteV1{Title: "t", Body: "b"}).Exec(ctx)
		assert.Error(t, err, "duplicate accepted by the unique index")
	})
}

type pairRow struct {
	bun.BaseModel `bun:"table:mt_pairs"`

	A string `bun:"a,pk"`
	B int64  `bun:"b,pk"`
	V string `bun:"v"`
}

type noKeyRow struct {
	bun.BaseModel `bun:"table:mt_nokey"`

	V string `bun:"v"`
}

func TestWithoutRowID(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := ctxT(t)
		e := newEnv(t, d)
		plain := migrate.Model{Value: (*pairRow)(nil)}
		clustered := migrate.Model{Value: (*pairRow)(nil), WithoutRowID: true}
		sumPlain, err := e.m.Checksum(plain)
		require.NoError(t, err)
		sumClustered, err := e.m.Checksum(clustered)
		require.NoError(t, err)
		if e.pg() || e.mysql() {
			assert.Equal(t, sumPlain, sumClustered, "PostgreSQL and MySQL ignore WithoutRowID")
		} else {
			assert.NotEqual(t, sumPlain, sumClustered, "the table's storage is part of its schema")
		}

		res, err := e.m.Ensure(ctx, clustered, false)
		require.NoError(t, err)
		require.NotNil(t, res.Plan)
		if e.pg() || e.mysql() { // InnoDB keeps every table in primary-key order
			assert.NotContains(t, res.Plan.SQL(), "WITHOUT ROWID")
		} else {
			assert.Contains(t, res.Plan.SQL(), "WITHOUT ROWID")
			var ddl string
			require.NoError(t, e.db.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE name = 'mt_pairs'`).Scan(&ddl))
			assert.Contains(t, ddl, "WITHOUT ROWID")
		}
		status, err := e.m.Check(ctx, clustered)
		require.NoError(t, err)
		assert.Equal(t, migrate.UpToDate, status)

		_, err = e.m.Checksum(migrate.Model{Value: (*noKeyRow)(nil), WithoutRowID: true})
		require.ErrorIs(t, err, migrate.ErrInvalidModel)
	})
}
