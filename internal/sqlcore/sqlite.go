package sqlcore

import (
	"context"
	"errors"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// SQLite is the dialect of SQLite (modernc.org/sqlite), the zero Dialect.
var SQLite = Dialect{&sqliteEngine}

var sqliteEngine = engine{
	name:              dialect.SQLite.String(),
	system:            "sqlite",
	product:           "SQLite",
	quote:             '`',
	timeAsText:        true,
	prepare:           true,
	immediateTx:       true,
	unboundedLimit:    " LIMIT -1",
	defaultValuesOnly: true,
	withoutRowID:      true,
	historyID:         "id INTEGER PRIMARY KEY AUTOINCREMENT",
	timestamp:         "TIMESTAMP",
	catalog: Catalog{
		Tables:  `SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?)`,
		Columns: "SELECT name, type, `notnull`, pk, dflt_value IS NOT NULL FROM pragma_table_info(?) ORDER BY cid",
		Indexes: `SELECT il.name, il."unique" <> 0, COALESCE(ii.name, '')
FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii
ORDER BY il.name, ii.seqno`,
	},
	locked: sqliteLocked,
}

func init() { register(&sqliteEngine) }

// sqliteLocked is Locked on SQLite: the write lock of BEGIN IMMEDIATE on a
// connection of its own, which needs no table (so ddl changes nothing).
func sqliteLocked(ctx context.Context, db *bun.DB, key string, _ bool, fn func(bun.IConn) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	if err := BeginImmediate(ctx, conn.Conn, conn); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	done := false
	defer func() {
		if !done { // fn panicked
			_ = Rollback(ctx, conn.Conn, conn)
		}
	}()
	err = fn(conn)
	done = true
	if err != nil {
		return errors.Join(err, Rollback(ctx, conn.Conn, conn))
	}
	return Commit(ctx, conn.Conn, conn)
}
