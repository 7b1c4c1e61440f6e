package dataflow_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// zrow is the model of the zero-value tests.
type zrow struct {
	bun.BaseModel `bun:"table:zrows"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name"`
}

// call runs fn and turns a panic into an error, so that one panicking
// method does not hide the others.
func call(fn func() error) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			err, panicked = fmt.Errorf("panic: %v", r), true
		}
	}()
	return fn(), false
}

// methodNames returns the exported methods of v's type, sorted.
func methodNames(v any) []string {
	typ := reflect.TypeOf(v)
	out := make([]string, 0, typ.NumMethod())
	for i := range typ.NumMethod() {
		out = append(out, typ.Method(i).Name)
	}
	slices.Sort(out)
	return out
}

// caseNames returns the sorted keys of a case table.
func caseNames[F any](cases map[string]F) []string {
	out := make([]string, 0, len(cases))
	for name := range cases {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// A nil, zero or closed DB, Table or Tx returns ErrClosed from every
// method that returns an error, and never panics.
func TestZeroAndClosedValues(t *testing.T) {
	ctx := testCtx(t, time.Minute)

	// Every method of DB: errs says whether it reports errors (the others
	// must only not panic).
	dbCases := map[string]struct {
		errs bool
		fn   func(db *dataflow.DB) error
	}{
		"Bun":      {false, func(db *dataflow.DB) error { db.Bun(); return nil }},
		"Migrator": {false, func(db *dataflow.DB) error { db.Migrator(); return nil }},
		"Dialect":  {false, func(db *dataflow.DB) error { db.Dialect(); return nil }},
		"Stats":    {false, func(db *dataflow.DB) error { db.Stats(); return nil }},
		"Rebind":   {false, func(db *dataflow.DB) error { db.Rebind("SELECT ?"); return nil }},
		"Closed": {false, func(db *dataflow.DB) error {
			if !db.Closed() {
				return errors.New("Closed() = false")
			}
			return nil
		}},
		// Close releases nothing on a zero or closed DB: like a second
		// Close, it returns nil.
		"Close": {false, func(db *dataflow.DB) error { return db.Close() }},
		"RunInTx": {true, func(db *dataflow.DB) error {
			ran := false
			err := db.RunInTx(ctx, func(context.Context, *dataflow.Tx) error { ran = true; return nil })
			if ran {
				return errors.New("fn ran")
			}
			return err
		}},
		"ConnExecContext": {true, func(db *dataflow.DB) error {
			_, err := db.ConnExecContext(ctx, nil, "SELECT 1")
			return err
		}},
		"ConnQueryContext": {true, func(db *dataflow.DB) error {
			_, err := db.ConnQueryContext(ctx, nil, "SELECT 1")
			return err
		}},
		"ExecContext":  {true, func(db *dataflow.DB) error { _, err := db.ExecContext(ctx, "SELECT 1"); return err }},
		"QueryContext": {true, func(db *dataflow.DB) error { _, err := db.QueryContext(ctx, "SELECT 1"); return err }},
		"QueryRetry":   {true, func(db *dataflow.DB) error { _, err := db.QueryRetry(ctx, "SELECT 1"); return err }},
		"ScanRows":     {true, func(db *dataflow.DB) error { return db.ScanRows(ctx, nil, new(int)) }},
		"Bind":         {true, func(db *dataflow.DB) error { _, err := db.Bind(1); return err }},
		"TimeColumn":   {false, func(db *dataflow.DB) error { db.TimeColumn("created"); return nil }},
		"EnsureBackoff": {false, func(db *dataflow.DB) error {
			if minWait, maxWait := db.EnsureBackoff(); minWait <= 0 || maxWait < minWait {
				return fmt.Errorf("backoff %v..%v; want the defaults", minWait, maxWait)
			}
			return nil
		}},
		"SchemaChanges": {false, func(db *dataflow.DB) error {
			if db.SchemaChanges() {
				return errors.New("a zero or closed DB may change the schema")
			}
			return nil
		}},
		"Survey": {true, func(db *dataflow.DB) error {
			_, err := db.Survey(ctx, nil, new(dataflow.Table[zrow]))
			return err
		}},
		"NewStmt":           {true, func(db *dataflow.DB) error { _, err := db.NewStmt("SELECT 1").Exec(ctx); return err }},
		"NewReadStmt":       {true, func(db *dataflow.DB) error { _, err := db.NewReadStmt("SELECT 1").Query(ctx); return err }},
		"NewIdempotentStmt": {true, func(db *dataflow.DB) error { _, err := db.NewIdempotentStmt("SELECT 1").Exec(ctx); return err }},
	}
	require.Equal(t, methodNames(&dataflow.DB{}), caseNames(dbCases), "every method of DB has a case")

	tableCases := map[string]struct {
		errs bool
		fn   func(tb *dataflow.Table[zrow]) error
	}{
		"Name":    {false, func(tb *dataflow.Table[zrow]) error { tb.Name(); return nil }},
		"Columns": {false, func(tb *dataflow.Table[zrow]) error { tb.Columns(); return nil }},
		"DB":      {false, func(tb *dataflow.Table[zrow]) error { tb.DB(); return nil }},
		"WithTx": {true, func(tb *dataflow.Table[zrow]) error {
			_, err := tb.WithTx(&dataflow.Tx{}).Count(ctx, nil)
			return err
		}},
		"EnsureTable": {true, func(tb *dataflow.Table[zrow]) error { return tb.EnsureTable(ctx) }},
		"Ready":       {true, func(tb *dataflow.Table[zrow]) error { return tb.Ready(ctx) }},
		"Create":      {true, func(tb *dataflow.Table[zrow]) error { return tb.Create(ctx, &zrow{Name: "a"}) }},
		"Upsert":      {true, func(tb *dataflow.Table[zrow]) error { return tb.Upsert(ctx, &zrow{ID: 1}) }},
		"Read":        {true, func(tb *dataflow.Table[zrow]) error { _, err := tb.Read(ctx, int64(1)); return err }},
		"Update":      {true, func(tb *dataflow.Table[zrow]) error { return tb.Update(ctx, &zrow{ID: 1}) }},
		"Delete":      {true, func(tb *dataflow.Table[zrow]) error { return tb.Delete(ctx, &zrow{ID: 1}) }},
		"List":        {true, func(tb *dataflow.Table[zrow]) error { _, err := tb.List(ctx, dataflow.Query{}); return err }},
		"Count":       {true, func(tb *dataflow.Table[zrow]) error { _, err := tb.Count(ctx, nil); return err }},
		// Empty input still reports the closed database.
		"BulkCreate": {true, func(tb *dataflow.Table[zrow]) error { return tb.BulkCreate(ctx, nil) }},
		"BulkUpsert": {true, func(tb *dataflow.Table[zrow]) error { return tb.BulkUpsert(ctx, nil) }},
		"BulkUpdate": {true, func(tb *dataflow.Table[zrow]) error {
			_, err := tb.BulkUpdate(ctx, dataflow.Filter{"id": 1}, map[string]any{"name": "b"})
			return err
		}},
		"BulkDelete": {true, func(tb *dataflow.Table[zrow]) error {
			_, err := tb.BulkDelete(ctx, dataflow.Filter{"id": 1})
			return err
		}},
	}
	require.Equal(t, methodNames(&dataflow.Table[zrow]{}), caseNames(tableCases), "every method of Table has a case")

	txCases := map[string]func(tx *dataflow.Tx) error{
		"ExecContext":  func(tx *dataflow.Tx) error { _, err := tx.ExecContext(ctx, "SELECT 1"); return err },
		"QueryContext": func(tx *dataflow.Tx) error { _, err := tx.QueryContext(ctx, "SELECT 1"); return err },
	}
	require.Equal(t, methodNames(&dataflow.Tx{}), caseNames(txCases), "every method of Tx has a case")

	closed := open(t, dbtest.SQLiteURL(t))
	closedTable := register[zrow](t, closed)
	require.NoError(t, closedTable.EnsureTable(ctx))
	require.NoError(t, closed.Close())

	// Each case gets a value of its own: Close marks a zero DB closed.
	dbs := map[string]func() *dataflow.DB{
		"nil":    func() *dataflow.DB { return nil },
		"zero":   func() *dataflow.DB { return new(dataflow.DB) },
		"closed": func() *dataflow.DB { return closed },
	}
	tables := map[string]func() *dataflow.Table[zrow]{
		"nil":       func() *dataflow.Table[zrow] { return nil },
		"zero":      func() *dataflow.Table[zrow] { return new(dataflow.Table[zrow]) },
		"closed DB": func() *dataflow.Table[zrow] { return closedTable },
	}
	txs := map[string]func() *dataflow.Tx{
		"nil":  func() *dataflow.Tx { return nil },
		"zero": func() *dataflow.Tx { return new(dataflow.Tx) },
	}

	check := func(t *testing.T, name string, errs bool, fn func() error) {
		t.Helper()
		err, panicked := call(fn)
		assert.False(t, panicked, "%s panicked: %v", name, err)
		if errs {
			assert.ErrorIs(t, err, dataflow.ErrClosed, name)
		} else {
			assert.NoError(t, err, name)
		}
	}
	for what, db := range dbs {
		for _, m := range caseNames(dbCases) {
			t.Run(what+" DB/"+m, func(t *testing.T) { check(t, "DB."+m, dbCases[m].errs, func() error { return dbCases[m].fn(db()) }) })
		}
		t.Run(what+" DB/Register", func(t *testing.T) {
			err, panicked := call(func() error { _, err := dataflow.Register[zrow](db()); return err })
			require.False(t, panicked, "%v", err)
			if db() == nil {
				assert.ErrorIs(t, err, dataflow.ErrInvalidArgument, "a nil db is a programming error")
				return
			}
			assert.ErrorIs(t, err, dataflow.ErrClosed)
		})
	}
	for what, tb := range tables {
		for _, m := range caseNames(tableCases) {
			t.Run(what+" Table/"+m, func(t *testing.T) {
				check(t, "Table."+m, tableCases[m].errs, func() error { return tableCases[m].fn(tb()) })
			})
		}
	}
	for what, tx := range txs {
		for _, m := range caseNames(txCases) {
			t.Run(what+" Tx/"+m, func(t *testing.T) { check(t, "Tx."+m, true, func() error { return txCases[m](tx()) }) })
		}
	}

	// What the value-returning methods of a zero value return.
	var zero dataflow.DB
	assert.Equal(t, dataflow.Stats{}, zero.Stats())
	assert.Empty(t, (&dataflow.Table[zrow]{}).Name())
	assert.Nil(t, (&dataflow.Table[zrow]{}).Columns())
	assert.Equal(t, "zrows", closedTable.Name(), "a closed DB's table keeps its name")
}
