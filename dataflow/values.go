package dataflow

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/schema"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// bindValue turns a Go value into a bound parameter: times in UTC (as
// fixed-width text on SQLite), composite values as JSON, everything else as
// database/sql would take it.
func bindValue(d sqlcore.Dialect, v any) (any, error) {
	switch x := v.(type) {
	case nil, []byte, bool, int, int8, int16, int32, int64, uint8, uint16, uint32, float32, float64:
		return v, nil
	case string:
		return v, checkText(x) // v, not x: no second boxing
	case uint:
		return checkUint(uint64(x))
	case uint64:
		return checkUint(x)
	case time.Time:
		if y := x.UTC().Year(); y < 1 || y > 9999 {
			return nil, fmt.Errorf("%w: time %s outside years 1-9999", ErrInvalidArgument, x)
		}
		return d.BindTime(x), nil
	case driver.Valuer:
		return x, nil
	case Op, *Op:
		return nil, fmt.Errorf("%w: an operator is not a value (operators do not nest)", ErrInvalidArgument)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, nil
		}
		return bindValue(d, rv.Elem().Interface())
	case reflect.Map, reflect.Struct, reflect.Array:
		return jsonValue(v)
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return rv.Bytes(), nil
		}
		return jsonValue(v)
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return nil, fmt.Errorf("%w: cannot store a %s", ErrInvalidArgument, rv.Type())
	}
	switch rv.Kind() {
	case reflect.String:
		return v, checkText(rv.String())
	case reflect.Uint, reflect.Uint64:
		if _, err := checkUint(rv.Uint()); err != nil {
			return nil, err
		}
	}
	return v, nil // named basic types: database/sql converts them by kind
}

// checkText refuses what PostgreSQL refuses and SQLite would store
// differently, so both dialects behave alike: a NUL byte, invalid UTF-8.
func checkText(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%w: text holds a NUL byte", ErrInvalidArgument)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: text is not valid UTF-8", ErrInvalidArgument)
	}
	return nil
}

// checkUint refuses integers that no SQL integer column holds.
func checkUint(u uint64) (any, error) {
	if u > math.MaxInt64 {
		return nil, fmt.Errorf("%w: %d overflows a 64-bit signed integer", ErrInvalidArgument, u)
	}
	return int64(u), nil
}

func jsonValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: encode json: %w", ErrInvalidArgument, err)
	}
	return string(b), nil
}

// fieldArg is the bound parameter for one field of a model struct.
func fieldArg(d sqlcore.Dialect, f *schema.Field, strct reflect.Value) (any, error) {
	if (f.IsPtr && f.HasNilValue(strct)) || (f.NullZero && f.HasZeroValue(strct)) {
		return nil, nil
	}
	fv := f.Value(strct)
	if d.NativeArrays() && f.Tag.HasOption("array") {
		return pgdialect.Array(fv.Interface()), nil
	}
	return bindValue(d, fv.Interface())
}

// usesDefault reports whether an insert should leave the column to the
// database: an auto-increment, identity or defaulted column holding zero.
func usesDefault(f *schema.Field, strct reflect.Value) bool {
	return (f.AutoIncrement || f.Identity || f.SQLDefault != "") && f.HasZeroValue(strct)
}

// omitMask has a bit set for each of the first 64 fields that an insert of
// strct leaves to the database (see usesDefault).
func omitMask(fields []*schema.Field, strct reflect.Value) uint64 {
	var omit uint64
	for i, f := range fields {
		if i < 64 && usesDefault(f, strct) {
			omit |= 1 << i
		}
	}
	return omit
}

// sqlBuilder writes SQL with numbered or positional placeholders.
type sqlBuilder struct {
	d    sqlcore.Dialect
	b    strings.Builder
	args []any
}

func (b *sqlBuilder) WriteString(s string) { b.b.WriteString(s) }

// arg appends a placeholder for v, converted by bindValue.
func (b *sqlBuilder) arg(v any) error {
	bv, err := bindValue(b.d, v)
	if err != nil {
		return err
	}
	b.rawArg(bv)
	return nil
}

// rawArg appends a placeholder for an already converted value.
func (b *sqlBuilder) rawArg(v any) {
	b.args = append(b.args, v)
	b.d.WritePlaceholder(&b.b, len(b.args))
}

func (b *sqlBuilder) String() string { return b.b.String() }
