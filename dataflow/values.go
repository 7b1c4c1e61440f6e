package dataflow

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/schema"
)

// sqliteTime is the fixed-width UTC text form times take on SQLite, so that
// text order is time order.
const sqliteTime = "2006-01-02 15:04:05.000000000+00:00"

// bindValue turns a Go value into a bound parameter: times in UTC (as
// fixed-width text on SQLite), composite values as JSON, everything else as
// database/sql would take it.
func bindValue(pg bool, v any) (any, error) {
	switch x := v.(type) {
	case nil, string, []byte, bool, int, int8, int16, int32, int64,
		uint, uint8, uint16, uint32, uint64, float32, float64:
		return v, nil
	case time.Time:
		if pg {
			return x.UTC(), nil
		}
		return x.UTC().Format(sqliteTime), nil
	case driver.Valuer:
		return x, nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil, nil
		}
		return bindValue(pg, rv.Elem().Interface())
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
	return v, nil // named basic types: database/sql converts them by kind
}

func jsonValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: encode json: %w", ErrInvalidArgument, err)
	}
	return string(b), nil
}

// fieldArg is the bound parameter for one field of a model struct.
func fieldArg(pg bool, f *schema.Field, strct reflect.Value) (any, error) {
	if (f.IsPtr && f.HasNilValue(strct)) || (f.NullZero && f.HasZeroValue(strct)) {
		return nil, nil
	}
	fv := f.Value(strct)
	if pg && f.Tag.HasOption("array") {
		return pgdialect.Array(fv.Interface()), nil
	}
	return bindValue(pg, fv.Interface())
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
	pg   bool
	b    strings.Builder
	args []any
}

func (b *sqlBuilder) WriteString(s string) { b.b.WriteString(s) }

// arg appends a placeholder for v, converted by bindValue.
func (b *sqlBuilder) arg(v any) error {
	bv, err := bindValue(b.pg, v)
	if err != nil {
		return err
	}
	b.rawArg(bv)
	return nil
}

// rawArg appends a placeholder for an already converted value.
func (b *sqlBuilder) rawArg(v any) {
	b.args = append(b.args, v)
	if b.pg {
		b.b.WriteByte('$')
		b.b.WriteString(strconv.Itoa(len(b.args)))
	} else {
		b.b.WriteByte('?')
	}
}

func (b *sqlBuilder) String() string { return b.b.String() }
