package sqlcore

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// Postgres is the dialect of PostgreSQL (pgx).
var Postgres = Dialect{&postgresEngine}

var postgresEngine = engine{
	name:          dialect.PG.String(),
	system:        "postgresql",
	product:       "PostgreSQL",
	quote:         '"',
	numbered:      true,
	arrays:        true,
	varcharLength: true,
	// The type names bun writes -> the names the PostgreSQL catalog
	// reports, so a model and a live table compare equal.
	typeAliases: map[string]string{
		"varchar":     "character varying",
		"char":        "character",
		"timestamptz": "timestamp with time zone",
		"timestamp":   "timestamp without time zone",
		"timetz":      "time with time zone",
		"time":        "time without time zone",
		"bigserial":   "bigint",
		"serial":      "integer",
		"smallserial": "smallint",
		"int":         "integer",
		"int8":        "bigint",
		"int4":        "integer",
		"int2":        "smallint",
		"bool":        "boolean",
		"float8":      "double precision",
		"float4":      "real",
		"decimal":     "numeric",
	},
	historyID: "id BIGSERIAL PRIMARY KEY",
	timestamp: "TIMESTAMPTZ",
	catalog: Catalog{
		Tables: `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname IN (?)`,
		Columns: `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
	COALESCE((SELECT true FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY(i.indkey)), false),
	a.atthasdef OR a.attidentity <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = ? AND c.relkind IN ('r', 'p')
	AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`,
		Indexes: `SELECT i.relname, x.indisunique, COALESCE(a.attname, '')
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum AND k.attnum > 0
WHERE n.nspname = current_schema() AND t.relname = ?
ORDER BY i.relname, k.ord`,
	},
	alterType: func(table, col, typ string) string {
		return fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s", table, col, typ, col, typ)
	},
	locked: postgresLocked,
}

func init() { register(&postgresEngine) }

// postgresLocked is Locked on PostgreSQL: a transaction-scoped advisory
// lock per key and current schema, which needs no table (so ddl changes
// nothing).
func postgresLocked(ctx context.Context, db *bun.DB, key string, _ bool, fn func(bun.IConn) error) error {
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext(? || current_schema()))`, key); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		return fn(tx)
	})
}
