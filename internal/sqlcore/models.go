package sqlcore

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"
)

// Models builds the bun tables of model types, remembering the types bun
// cannot build. The zero value is ready to use.
type Models struct {
	invalid sync.Map // reflect.Type -> error
}

// Table returns db's table for the struct type typ. Its error says what is
// wrong with typ, for the caller to wrap in its own sentinel ("%w: %w"):
// bun panicked on a malformed struct tag, or typ has no columns.
//
// bun panics only the first time: it keeps the half-built table and hands
// it out afterwards. So the verdict is remembered, and every later call
// fails the same.
func (m *Models) Table(db *bun.DB, typ reflect.Type) (t *schema.Table, err error) {
	if err, ok := m.invalid.Load(typ); ok {
		return nil, err.(error)
	}
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("%s: %v", typ, r)
			m.invalid.Store(typ, err)
		}
	}()
	t = db.Table(typ)
	if len(t.Fields) == 0 {
		return nil, fmt.Errorf("%s has no columns", typ)
	}
	return t, nil
}

// HasColumn reports whether t has a column of the SQL name name.
func HasColumn(t *schema.Table, name string) bool {
	for _, f := range t.Fields {
		if f.Name == name {
			return true
		}
	}
	return false
}
