package dataflow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// maxParams bounds the bound parameters of one bulk statement (SQLite
// allows 32766, PostgreSQL 65535).
const maxParams = 32000

func (t *Table[T]) begin(ctx context.Context) (querier, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if err := t.db.ready(ctx, t.st); err != nil {
		return nil, err
	}
	return t.querier(), nil
}

func rowValue[T any](row *T) (reflect.Value, error) {
	if row == nil {
		return reflect.Value{}, fmt.Errorf("%w: nil row", ErrInvalidArgument)
	}
	return reflect.ValueOf(row).Elem(), nil
}

// Create inserts row. Auto-increment and defaulted columns left at zero are
// filled by the database and read back into row.
func (t *Table[T]) Create(ctx context.Context, row *T) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.insert(ctx, row, false)
}

// Upsert inserts row or, when its primary key exists, updates every other
// column.
func (t *Table[T]) Upsert(ctx context.Context, row *T) error {
	if err := t.usable(); err != nil {
		return err
	}
	if len(t.st.st.PKs) == 0 {
		return ErrNoPrimaryKey
	}
	return t.insert(ctx, row, true)
}

func (t *Table[T]) insert(ctx context.Context, row *T, upsert bool) error {
	rv, err := rowValue(row)
	if err != nil {
		return err
	}
	ins := t.st.sql.insertFor(t.st.st, omitMask(t.st.st.Fields, rv), 1, upsert)
	args := make([]any, len(ins.fields))
	for i, f := range ins.fields {
		if args[i], err = fieldArg(t.db.d, f, rv); err != nil {
			return fmt.Errorf("%s %s: column %s: %w", opName(upsert), t.st.name, f.Name, err)
		}
	}
	q, err := t.begin(ctx)
	if err != nil {
		return err
	}
	if len(ins.returning) == 0 {
		_, err = t.db.exec(ctx, q, ins.sql, args)
		return t.wrap(opName(upsert), err)
	}
	rows, err := t.db.query(ctx, q, ins.sql, args)
	if err != nil {
		return t.wrap(opName(upsert), err)
	}
	return t.wrap(opName(upsert), t.scanReturning(rows, ins, []reflect.Value{rv}))
}

func opName(upsert bool) string {
	if upsert {
		return "upsert"
	}
	return "create"
}

// scanReturning reads the RETURNING columns back into the rows. Neither
// dialect promises RETURNING's order for a multi-row insert, but both hand
// out an auto-increment key in the order rows are inserted: a lone such key
// is matched by sorting. Other columns are matched by position (in
// practice insertion order on both).
func (t *Table[T]) scanReturning(rows *sql.Rows, ins insertStmt, dst []reflect.Value) error {
	defer rows.Close()
	var got [][]any
	for rows.Next() {
		vals := make([]any, len(ins.returning))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		got = append(got, vals)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(got) != len(dst) {
		return fmt.Errorf("insert returned %d rows for %d", len(got), len(dst))
	}
	if len(got) > 1 && len(ins.returning) == 1 && (ins.returning[0].AutoIncrement || ins.returning[0].Identity) {
		if keys, ok := int64s(got); ok {
			slices.Sort(keys)
			for i, k := range keys {
				got[i][0] = k
			}
		}
	}
	for i, vals := range got {
		for j, f := range ins.returning {
			if err := f.ScanValue(dst[i], vals[j]); err != nil {
				return err
			}
		}
	}
	return nil
}

// int64s returns the first column of rows as integers, if it is one.
func int64s(rows [][]any) ([]int64, bool) {
	keys := make([]int64, len(rows))
	for i, r := range rows {
		k, ok := r[0].(int64)
		if !ok {
			return nil, false
		}
		keys[i] = k
	}
	return keys, true
}

// wrap names the operation and the table in err. A statement that failed
// because the live table lacks a model column is ErrSchemaMismatch.
func (t *Table[T]) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if col, ok := missingColumnAny(err); ok && !errors.Is(err, ErrSchemaMismatch) && !errors.Is(err, ErrEnsureFailed) {
		return fmt.Errorf("%s %s: %w: column %q is missing from the table: %w", op, t.st.name, ErrSchemaMismatch, col, err)
	}
	return fmt.Errorf("%s %s: %w", op, t.st.name, err)
}

// missingColumn reports whether err is the database's "no such column":
// SQLSTATE 42703 on PostgreSQL, "no such column" or "has no column named"
// on SQLite. It returns the column's name when the message gives it.
func missingColumn(err error) (string, bool) {
	msg := err.Error()
	var state interface{ SQLState() string }
	if errors.As(err, &state) {
		if state.SQLState() != "42703" {
			return "", false
		}
		// column "c" does not exist; column "c" of relation "t" does not exist
		if _, rest, ok := strings.Cut(msg, `column "`); ok {
			if name, _, ok := strings.Cut(rest, `"`); ok {
				return name, true
			}
		}
		return "", true
	}
	for _, mark := range []string{"no such column: ", "has no column named "} {
		if _, rest, ok := strings.Cut(msg, mark); ok {
			name, _, _ := strings.Cut(rest, " (") // modernc appends " (1)", the result code
			if _, c, ok := strings.Cut(name, "."); ok {
				name = c // EXCLUDED.c
			}
			return name, true
		}
	}
	return "", false
}

// Read returns the row with the given primary key values, in key order, or
// ErrNotFound.
func (t *Table[T]) Read(ctx context.Context, pk ...any) (*T, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if len(t.st.st.PKs) == 0 {
		return nil, ErrNoPrimaryKey
	}
	if len(pk) != len(t.st.st.PKs) {
		return nil, fmt.Errorf("%w: read %s: %d key values, want %d", ErrInvalidArgument, t.st.name, len(pk), len(t.st.st.PKs))
	}
	args := make([]any, len(pk))
	for i, v := range pk {
		if isNil(v) {
			return nil, fmt.Errorf("%w: read %s: nil key", ErrInvalidArgument, t.st.name)
		}
		var err error
		if args[i], err = bindValue(t.db.d, v); err != nil {
			return nil, err
		}
	}
	q, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := t.db.query(ctx, q, t.st.sql.readByPK, args)
	if err != nil {
		return nil, t.wrap("read", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, t.wrap("read", err)
		}
		return nil, fmt.Errorf("read %s: %w", t.st.name, ErrNotFound)
	}
	row := new(T)
	if err := t.db.bun.ScanRow(ctx, rows, row); err != nil {
		return nil, t.wrap("read", err)
	}
	t.st.utcTimes(reflect.ValueOf(row).Elem())
	return row, t.wrap("read", rows.Close())
}

// pkArgs are the bound primary key values of row, after its other args.
func (t *Table[T]) pkArgs(rv reflect.Value, args []any) ([]any, error) {
	for _, f := range t.st.st.PKs {
		v, err := fieldArg(t.db.d, f, rv)
		if err != nil {
			return nil, err
		}
		args = append(args, v)
	}
	return args, nil
}

// Update writes every non-key column of row to the row with its primary
// key, or returns ErrNotFound.
func (t *Table[T]) Update(ctx context.Context, row *T) error {
	if err := t.usable(); err != nil {
		return err
	}
	if len(t.st.st.PKs) == 0 {
		return ErrNoPrimaryKey
	}
	if t.st.sql.updateByPK == "" {
		return fmt.Errorf("%w: update %s: the model has no column besides its key", ErrInvalidArgument, t.st.name)
	}
	rv, err := rowValue(row)
	if err != nil {
		return err
	}
	args := make([]any, 0, len(t.st.st.Fields))
	for _, f := range t.st.st.DataFields {
		v, err := fieldArg(t.db.d, f, rv)
		if err != nil {
			return fmt.Errorf("update %s: column %s: %w", t.st.name, f.Name, err)
		}
		args = append(args, v)
	}
	if args, err = t.pkArgs(rv, args); err != nil {
		return t.wrap("update", err)
	}
	return t.execOne(ctx, "update", t.st.sql.updateByPK, args)
}

// Delete removes the row with row's primary key, or returns ErrNotFound.
func (t *Table[T]) Delete(ctx context.Context, row *T) error {
	if err := t.usable(); err != nil {
		return err
	}
	if len(t.st.st.PKs) == 0 {
		return ErrNoPrimaryKey
	}
	rv, err := rowValue(row)
	if err != nil {
		return err
	}
	args, err := t.pkArgs(rv, nil)
	if err != nil {
		return t.wrap("delete", err)
	}
	return t.execOne(ctx, "delete", t.st.sql.deleteByPK, args)
}

func (t *Table[T]) execOne(ctx context.Context, op, query string, args []any) error {
	q, err := t.begin(ctx)
	if err != nil {
		return err
	}
	res, err := t.db.exec(ctx, q, query, args)
	if err != nil {
		return t.wrap(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return t.wrap(op, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %s: %w", op, t.st.name, ErrNotFound)
	}
	return nil
}

// List returns the rows q selects, ordered by q.OrderBy (default: the
// primary key).
func (t *Table[T]) List(ctx context.Context, q Query) ([]T, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if q.Limit < 0 || q.Offset < 0 {
		return nil, fmt.Errorf("%w: list %s: negative limit or offset", ErrInvalidArgument, t.st.name)
	}
	b := sqlBuilder{d: t.db.d}
	b.WriteString("SELECT " + t.st.sql.selectCols + " FROM " + t.st.sql.table)
	if err := appendWhere(&b, t.st, q.Filter); err != nil {
		return nil, fmt.Errorf("list %s: %w", t.st.name, err)
	}
	if err := appendOrder(&b, t.st, q.OrderBy); err != nil {
		return nil, fmt.Errorf("list %s: %w", t.st.name, err)
	}
	switch {
	case q.Limit > 0:
		b.WriteString(" LIMIT ")
		b.rawArg(int64(q.Limit))
	case q.Offset > 0:
		b.WriteString(t.db.d.UnboundedLimit()) // SQLite and MySQL need a LIMIT before OFFSET
	}
	if q.Offset > 0 {
		b.WriteString(" OFFSET ")
		b.rawArg(int64(q.Offset))
	}
	qr, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := t.db.query(ctx, qr, b.String(), b.args)
	if err != nil {
		return nil, t.wrap("list", err)
	}
	out := []T{}
	if err := t.db.bun.ScanRows(ctx, rows, &out); err != nil {
		return nil, t.wrap("list", err)
	}
	if len(t.st.timeFields) > 0 {
		for i := range out {
			t.st.utcTimes(reflect.ValueOf(&out[i]).Elem())
		}
	}
	return out, nil
}

// Count returns how many rows f selects.
func (t *Table[T]) Count(ctx context.Context, f Filter) (int, error) {
	if err := t.usable(); err != nil {
		return 0, err
	}
	b := sqlBuilder{d: t.db.d}
	b.WriteString("SELECT count(*) FROM " + t.st.sql.table)
	if err := appendWhere(&b, t.st, f); err != nil {
		return 0, fmt.Errorf("count %s: %w", t.st.name, err)
	}
	q, err := t.begin(ctx)
	if err != nil {
		return 0, err
	}
	rows, err := t.db.query(ctx, q, b.String(), b.args)
	if err != nil {
		return 0, t.wrap("count", err)
	}
	defer rows.Close()
	var n int64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, t.wrap("count", err)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, t.wrap("count", err)
	}
	return int(n), nil
}

// BulkCreate inserts rows with one multi-row INSERT per batch; more than one
// batch runs in a transaction, so either all rows are stored or none.
func (t *Table[T]) BulkCreate(ctx context.Context, rows []T) error {
	if err := t.usable(); err != nil {
		return err
	}
	return t.bulkInsert(ctx, rows, false)
}

// BulkUpsert upserts rows like Upsert, one statement per batch, all or none.
func (t *Table[T]) BulkUpsert(ctx context.Context, rows []T) error {
	if err := t.usable(); err != nil {
		return err
	}
	if len(t.st.st.PKs) == 0 {
		return ErrNoPrimaryKey
	}
	return t.bulkInsert(ctx, rows, true)
}

func (t *Table[T]) bulkInsert(ctx context.Context, rows []T, upsert bool) error {
	op := "bulk " + opName(upsert)
	if len(rows) == 0 {
		return nil
	}
	type batch struct {
		ins  insertStmt
		args []any
		rvs  []reflect.Value
	}
	// Like Create, each row leaves to the database the defaulted columns it
	// holds zero in. Consecutive rows that agree on those columns share a
	// statement (all rows, usually); a row that differs starts another, so
	// a zero key is never sent as NULL and generated keys are read back.
	var batches []batch
	for start := 0; start < len(rows); {
		omit := omitMask(t.st.st.Fields, reflect.ValueOf(&rows[start]).Elem())
		cols := len(t.st.st.Fields) - bitCount(omit)
		per := max(1, maxParams/max(1, cols))
		if cols == 0 && t.db.d.DefaultValuesOnly() {
			per = 1 // SQLite has only DEFAULT VALUES, one row at a time
		}
		var part []reflect.Value
		for i := start; i < len(rows) && len(part) < per; i++ {
			rv := reflect.ValueOf(&rows[i]).Elem()
			if i > start && omitMask(t.st.st.Fields, rv) != omit {
				break
			}
			part = append(part, rv)
		}
		start += len(part)
		ins := t.st.sql.insertFor(t.st.st, omit, len(part), upsert)
		args := make([]any, 0, len(part)*len(ins.fields))
		for _, rv := range part {
			for _, f := range ins.fields {
				v, err := fieldArg(t.db.d, f, rv)
				if err != nil {
					return fmt.Errorf("%s %s: column %s: %w", op, t.st.name, f.Name, err)
				}
				args = append(args, v)
			}
		}
		batches = append(batches, batch{ins, args, part})
	}
	run := func(ctx context.Context, q querier) error {
		for _, bt := range batches {
			if len(bt.ins.returning) == 0 {
				if _, err := t.db.exec(ctx, q, bt.ins.sql, bt.args); err != nil {
					return err
				}
				continue
			}
			rs, err := t.db.query(ctx, q, bt.ins.sql, bt.args)
			if err != nil {
				return err
			}
			if err := t.scanReturning(rs, bt.ins, bt.rvs); err != nil {
				return err
			}
		}
		return nil
	}
	return t.wrap(op, t.inTx(ctx, len(batches) > 1, run))
}

// inTx runs fn on the handle's querier, inside a new transaction when
// atomic is set and the handle is not already in one.
func (t *Table[T]) inTx(ctx context.Context, atomic bool, fn func(context.Context, querier) error) error {
	q, err := t.begin(ctx)
	if err != nil {
		return err
	}
	if !atomic || t.tx != nil {
		return fn(ctx, q)
	}
	return t.db.runTx(ctx, func(ctx context.Context, tx *Tx) error { return fn(ctx, tx.q) })
}

func bitCount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// BulkUpdate sets the given columns on every row f selects and returns how
// many rows changed. An empty filter is ErrEmptyFilter.
func (t *Table[T]) BulkUpdate(ctx context.Context, f Filter, set map[string]any) (int64, error) {
	if err := t.usable(); err != nil {
		return 0, err
	}
	if len(f) == 0 {
		return 0, fmt.Errorf("bulk update %s: %w", t.st.name, ErrEmptyFilter)
	}
	if len(set) == 0 {
		return 0, fmt.Errorf("%w: bulk update %s: nothing to set", ErrInvalidArgument, t.st.name)
	}
	b := sqlBuilder{d: t.db.d}
	b.WriteString("UPDATE " + t.st.sql.table + " SET ")
	keys := make([]string, 0, len(set))
	for k := range set {
		if _, ok := t.st.cols[k]; !ok {
			return 0, fmt.Errorf("bulk update %s: %w: %q", t.st.name, ErrUnknownColumn, k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.st.sql.ident(t.st.cols[k]) + " = ")
		if err := b.arg(set[k]); err != nil {
			return 0, fmt.Errorf("bulk update %s: column %s: %w", t.st.name, k, err)
		}
	}
	if err := appendWhere(&b, t.st, f); err != nil {
		return 0, fmt.Errorf("bulk update %s: %w", t.st.name, err)
	}
	return t.execCount(ctx, "bulk update", &b)
}

// BulkDelete removes every row f selects and returns how many. An empty
// filter is ErrEmptyFilter.
func (t *Table[T]) BulkDelete(ctx context.Context, f Filter) (int64, error) {
	if err := t.usable(); err != nil {
		return 0, err
	}
	if len(f) == 0 {
		return 0, fmt.Errorf("bulk delete %s: %w", t.st.name, ErrEmptyFilter)
	}
	b := sqlBuilder{d: t.db.d}
	b.WriteString("DELETE FROM " + t.st.sql.table)
	if err := appendWhere(&b, t.st, f); err != nil {
		return 0, fmt.Errorf("bulk delete %s: %w", t.st.name, err)
	}
	return t.execCount(ctx, "bulk delete", &b)
}

func (t *Table[T]) execCount(ctx context.Context, op string, b *sqlBuilder) (int64, error) {
	q, err := t.begin(ctx)
	if err != nil {
		return 0, err
	}
	res, err := t.db.exec(ctx, q, b.String(), b.args)
	if err != nil {
		return 0, t.wrap(op, err)
	}
	n, err := res.RowsAffected()
	return n, t.wrap(op, err)
}
