package dataflow

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/uptrace/bun/schema"
)

// Filter selects rows: each key is an SQL column of the model, each value
// either a plain value (equality; nil means IS NULL) or an operator from
// Gt, Gte, Lt, Lte, Ne, In, Like and IsNull. Conditions are ANDed. Every
// value is a bound parameter; a key the model does not have is
// ErrUnknownColumn before any SQL runs.
type Filter map[string]any

// Query is a List request.
type Query struct {
	Filter  Filter
	OrderBy []string // "col" ascending, "-col" descending; default: primary key
	Limit   int      // 0: no limit
	Offset  int
}

// Op is a filter operator; build it with Gt, Gte, Lt, Lte, Ne, In, Like or
// IsNull.
type Op struct {
	sql  string // the operator, e.g. ">"
	v    any
	list []any // for In
	null bool  // for IsNull
}

// Gt matches column > v.
func Gt(v any) Op { return Op{sql: ">", v: v} }

// Gte matches column >= v.
func Gte(v any) Op { return Op{sql: ">=", v: v} }

// Lt matches column < v.
func Lt(v any) Op { return Op{sql: "<", v: v} }

// Lte matches column <= v.
func Lte(v any) Op { return Op{sql: "<=", v: v} }

// Ne matches column <> v (nil: IS NOT NULL).
func Ne(v any) Op { return Op{sql: "<>", v: v} }

// Like matches column LIKE pattern.
func Like(pattern string) Op { return Op{sql: "LIKE", v: pattern} }

// IsNull matches column IS NULL (true) or IS NOT NULL (false).
func IsNull(null bool) Op { return Op{sql: "IS NULL", null: null} }

// In matches column IN (values...). No values match no rows.
func In[V any](values ...V) Op {
	list := make([]any, len(values))
	for i, v := range values {
		list[i] = v
	}
	return Op{sql: "IN", list: list}
}

// appendWhere writes " WHERE …" for f, or nothing for an empty filter.
func appendWhere(b *sqlBuilder, cols map[string]*schema.Field, f Filter) error {
	if len(f) == 0 {
		return nil
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		if _, ok := cols[k]; !ok {
			return fmt.Errorf("%w: %q", ErrUnknownColumn, k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys) // one SQL text per filter shape
	b.WriteString(" WHERE ")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" AND ")
		}
		if err := appendCond(b, cols[k], f[k]); err != nil {
			return fmt.Errorf("filter %q: %w", k, err)
		}
	}
	return nil
}

func appendCond(b *sqlBuilder, col *schema.Field, v any) error {
	name := string(col.SQLName)
	op, isOp := v.(Op)
	if !isOp {
		if p, ok := v.(*Op); ok && p != nil {
			op, isOp = *p, true
		}
	}
	if !isOp {
		if isNil(v) {
			b.WriteString(name + " IS NULL")
			return nil
		}
		if k := reflect.TypeOf(v).Kind(); (k == reflect.Slice && reflect.TypeOf(v).Elem().Kind() != reflect.Uint8) || k == reflect.Map {
			return fmt.Errorf("%w: a %T is not a value to compare with (use In for a list)", ErrInvalidArgument, v)
		}
		b.WriteString(name + " = ")
		return b.arg(v)
	}
	switch op.sql {
	case "":
		return fmt.Errorf("%w: zero Op", ErrInvalidArgument)
	case "IS NULL":
		if op.null {
			b.WriteString(name + " IS NULL")
		} else {
			b.WriteString(name + " IS NOT NULL")
		}
		return nil
	case "IN":
		if len(op.list) == 0 {
			b.WriteString("1 = 0")
			return nil
		}
		b.WriteString(name + " IN (")
		for i, x := range op.list {
			if i > 0 {
				b.WriteString(", ")
			}
			if isNil(x) {
				return fmt.Errorf("%w: nil in In (use IsNull)", ErrInvalidArgument)
			}
			if err := b.arg(x); err != nil {
				return err
			}
		}
		b.WriteString(")")
		return nil
	case "<>":
		if isNil(op.v) {
			b.WriteString(name + " IS NOT NULL")
			return nil
		}
	case "LIKE":
	default:
		if isNil(op.v) {
			return fmt.Errorf("%w: nil with %s", ErrInvalidArgument, op.sql)
		}
	}
	b.WriteString(name + " " + op.sql + " ")
	return b.arg(op.v)
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// appendOrder writes " ORDER BY …"; with no order it sorts by the primary
// key, so results are deterministic.
func appendOrder(b *sqlBuilder, st *tableState, order []string) error {
	if len(order) == 0 {
		if len(st.st.PKs) == 0 {
			return nil
		}
		b.WriteString(" ORDER BY ")
		for i, f := range st.st.PKs {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(string(f.SQLName))
		}
		return nil
	}
	b.WriteString(" ORDER BY ")
	for i, o := range order {
		desc := strings.HasPrefix(o, "-")
		f, ok := st.cols[strings.TrimPrefix(o, "-")]
		if !ok {
			return fmt.Errorf("%w: order by %q", ErrUnknownColumn, o)
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(f.SQLName))
		if desc {
			b.WriteString(" DESC")
		}
	}
	return nil
}
