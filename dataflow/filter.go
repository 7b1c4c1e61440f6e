package dataflow

import (
	"database/sql/driver"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

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

// Like matches column LIKE pattern: % any run, _ any one character, and a
// backslash makes the next character literal, on every dialect (ESCAPE
// '\'). Case sensitivity is the dialect's: SQLite ignores ASCII case,
// PostgreSQL does not. A pattern over MaxLikePatternBytes, with a NUL byte
// or ending in a lone backslash is ErrInvalidArgument.
func Like(pattern string) Op { return Op{sql: "LIKE", v: pattern} }

// Limits on filter values, checked before any SQL runs.
const (
	MaxInValues         = 10000 // values in one In
	MaxLikePatternBytes = 50000 // SQLite's own limit on LIKE patterns
)

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
func appendWhere(b *sqlBuilder, st *tableState, f Filter) error {
	if len(f) == 0 {
		return nil
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		if _, ok := st.cols[k]; !ok {
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
		col := st.cols[k]
		if err := appendCond(b, col, st.sql.ident(col), f[k]); err != nil {
			return fmt.Errorf("filter %q: %w", k, err)
		}
	}
	return nil
}

// appendCond writes the condition on col, whose quoted name is name.
func appendCond(b *sqlBuilder, col *schema.Field, name string, v any) error {
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
		if err := checkType(col, v); err != nil {
			return err
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
		if len(op.list) > MaxInValues {
			return fmt.Errorf("%w: %d values in In, at most %d", ErrInvalidArgument, len(op.list), MaxInValues)
		}
		b.WriteString(name + " IN (")
		for i, x := range op.list {
			if i > 0 {
				b.WriteString(", ")
			}
			if isNil(x) {
				return fmt.Errorf("%w: nil in In (use IsNull)", ErrInvalidArgument)
			}
			if err := checkType(col, x); err != nil {
				return err
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
		pattern, _ := op.v.(string)
		if err := checkLike(pattern); err != nil {
			return err
		}
		b.WriteString(name + " LIKE ")
		if err := b.arg(pattern); err != nil {
			return err
		}
		b.WriteString(b.d.LikeEscape())
		return nil
	default:
		if isNil(op.v) {
			return fmt.Errorf("%w: nil with %s", ErrInvalidArgument, op.sql)
		}
	}
	if err := checkType(col, op.v); err != nil {
		return err
	}
	b.WriteString(name + " " + op.sql + " ")
	return b.arg(op.v)
}

func checkLike(p string) error {
	if len(p) > MaxLikePatternBytes {
		return fmt.Errorf("%w: LIKE pattern of %d bytes, at most %d", ErrInvalidArgument, len(p), MaxLikePatternBytes)
	}
	if err := checkText(p); err != nil {
		return err
	}
	escaped := false
	for i := 0; i < len(p); i++ {
		escaped = !escaped && p[i] == '\\'
	}
	if escaped {
		return fmt.Errorf("%w: LIKE pattern ends in a lone backslash", ErrInvalidArgument)
	}
	return nil
}

var (
	timeType   = reflect.TypeFor[time.Time]()
	valuerType = reflect.TypeFor[driver.Valuer]()
)

// checkType refuses a filter value of another kind than its column (a
// string for an integer column, a float for an integer, a number for a
// string), which PostgreSQL would reject with a raw error and SQLite would
// compare by its own rules. Columns and values of other types (JSON,
// custom Valuers) pass.
func checkType(col *schema.Field, v any) error {
	ct := col.IndirectType
	if ct == nil || ct.Implements(valuerType) || reflect.PointerTo(ct).Implements(valuerType) {
		return nil
	}
	if _, ok := v.(driver.Valuer); ok {
		return nil
	}
	vt := reflect.TypeOf(v)
	for vt.Kind() == reflect.Pointer {
		vt = vt.Elem()
	}
	cc, vc := kindOf(ct), kindOf(vt)
	if cc == "" || vc == "" || cc == vc || (cc == "float" && vc == "int") {
		return nil
	}
	return fmt.Errorf("%w: a %s value for %s column %s", ErrInvalidArgument, vt, ct, col.Name)
}

func kindOf(t reflect.Type) string {
	if t == timeType {
		return "time"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "int"
	case reflect.Float32, reflect.Float64:
		return "float"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	}
	return ""
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
			b.WriteString(st.sql.ident(f))
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
		b.WriteString(st.sql.ident(f))
		if desc {
			b.WriteString(" DESC")
		}
	}
	return nil
}
