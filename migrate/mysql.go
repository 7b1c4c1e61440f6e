package migrate

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/schema"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// The MySQL family (MariaDB 10.11, Galera, MySQL 8): its catalog, its
// DDL and its column types.
//
// DDL commits implicitly on MySQL, so a migration is not one transaction
// there: each step commits as it runs, under the migration lease (see
// sqlcore.Dialect.Locked), and the history row is written last. A run cut
// short is finished by the next: Check finds no checksum, and the plan
// against the live table holds only the steps still missing. On Galera
// every DDL statement runs in total order on every node.

func init() {
	registerDDL(sqlcore.MySQL.Name(), &ddl{
		setup:              mysqlCollation,
		modelType:          mysqlType,
		createTable:        mysqlCreateTable,
		addColumn:          mysqlAddColumn,
		modify:             mysqlModify,
		history:            mysqlHistory,
		dropIndexOn:        true,
		noIndexIfNotExists: true, // MySQL 8 has no CREATE INDEX IF NOT EXISTS
		noPartialIndex:     true,
	})
}

// mysqlTableOptions end every CREATE TABLE: InnoDB (Galera replicates only
// it), and an exact collation (see mysqlCollation), so that IDs, owners
// and tenants compare byte for byte, as on the other dialects, never case-
// or accent-insensitively, and "bob" never equals "bob ".
func (m *Migrator) mysqlTableOptions() string {
	c, _ := m.collation.Load().(string)
	if c == "" {
		c = "utf8mb4_bin"
	}
	return " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=" + c
}

// mysqlExactCollations are the binary collations without trailing-space
// padding, best first: utf8mb4_bin is a PAD SPACE collation, under which
// 'a' = 'a ' and the two collide in a key. MariaDB has utf8mb4_nopad_bin,
// MySQL 8 utf8mb4_0900_bin; utf8mb4_bin is the fallback of a server with
// neither.
var mysqlExactCollations = []string{"utf8mb4_nopad_bin", "utf8mb4_0900_bin"}

// mysqlCollation finds the server's exact collation once per Migrator (a
// catalog query before the first plan; a failure is not remembered).
func mysqlCollation(ctx context.Context, m *Migrator, c bun.IConn) error {
	if m.collation.Load() != nil {
		return nil
	}
	rows, err := c.QueryContext(ctx, "SELECT collation_name FROM information_schema.collations WHERE collation_name IN (?)", bun.List(mysqlExactCollations))
	if err != nil {
		return fmt.Errorf("find collation: %w", err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("find collation: %w", err)
		}
		have[name] = true
	}
	if err := closeRows(rows); err != nil {
		return fmt.Errorf("find collation: %w", err)
	}
	best := "utf8mb4_bin"
	for _, c := range mysqlExactCollations {
		if have[c] {
			best = c
			break
		}
	}
	m.collation.Store(best)
	return nil
}

// mysqlType is the column type of f on MySQL: bun's, made to hold what
// the other dialects hold. bun maps time.Time to DATETIME, which drops the
// fraction: times are DATETIME(6) (microseconds, as on PostgreSQL). TEXT
// and BLOB hold 64 KiB on MySQL: they are LONGTEXT and LONGBLOB (4 GiB),
// the size of TEXT and BYTEA elsewhere. A VARCHAR without a length gets
// bun's 255.
func mysqlType(f *schema.Field) string {
	typ := strings.TrimSpace(f.CreateTableSQLType)
	base, mod := typ, ""
	if i := strings.IndexByte(typ, '('); i >= 0 {
		base, mod = strings.TrimSpace(typ[:i]), typ[i:]
	}
	switch strings.ToUpper(base) {
	case "DATETIME", "TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITHOUT TIME ZONE":
		if mod == "" {
			return "DATETIME(6)"
		}
		return "DATETIME" + mod
	case "TEXT":
		if mod == "" {
			return "LONGTEXT"
		}
	case "BLOB", "BYTEA":
		return "LONGBLOB"
	case "VARCHAR", "CHARACTER VARYING":
		if mod == "" {
			return "VARCHAR(255)"
		}
		return "VARCHAR" + mod
	case "JSONB", "JSON":
		return "JSON"
	case "DOUBLE PRECISION", "FLOAT8":
		return "DOUBLE"
	}
	return typ
}

// mysqlDefault is f's DEFAULT clause value on MySQL: CURRENT_TIMESTAMP
// with the column's precision (DATETIME(6) refuses a default of less).
func mysqlDefault(f *schema.Field, typ string) string {
	d := f.SQLDefault
	switch strings.ToLower(d) {
	case "current_timestamp", "now()", "current_timestamp()":
		if i := strings.IndexByte(typ, '('); i >= 0 && strings.HasPrefix(strings.ToUpper(typ), "DATETIME") {
			return "CURRENT_TIMESTAMP" + typ[i:]
		}
		return "CURRENT_TIMESTAMP"
	}
	return d
}

// mysqlZeroDefault is zeroDefault for a MySQL type: DATETIME takes no
// zone offset.
func mysqlZeroDefault(typ string) string {
	t := sqlcore.MySQL.NormType(typ)
	if t == "datetime" || t == "timestamp" {
		return "'1970-01-01 00:00:00'"
	}
	return zeroDefault(t)
}

// mysqlColumnDef is a column's definition after its name.
func mysqlColumnDef(f *schema.Field) string {
	typ := mysqlType(f)
	def := typ
	if f.NotNull || f.IsPK {
		def += " NOT NULL"
	}
	if f.AutoIncrement || f.Identity {
		def += " AUTO_INCREMENT"
	}
	if f.SQLDefault != "" {
		def += " DEFAULT " + mysqlDefault(f, typ)
	}
	return def
}

// mysqlCreateTable is the CREATE TABLE of t on MySQL.
func mysqlCreateTable(m *Migrator, t *schema.Table) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + m.ident(t.Name) + " (")
	for i, f := range t.Fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.ident(f.Name) + " " + mysqlColumnDef(f))
	}
	if len(t.PKs) > 0 {
		b.WriteString(", PRIMARY KEY (" + m.idents(t.PKs) + ")")
	}
	names := make([]string, 0, len(t.Unique))
	for name := range t.Unique {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b.WriteString(", UNIQUE (" + m.idents(t.Unique[name]) + ")")
	}
	b.WriteString(")" + m.mysqlTableOptions())
	return b.String()
}

func (m *Migrator) idents(fs []*schema.Field) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = m.ident(f.Name)
	}
	return strings.Join(names, ", ")
}

// mysqlAddColumn is the ADD COLUMN of f on MySQL: NOT NULL with the type's
// zero for existing rows, as on the other dialects.
func mysqlAddColumn(m *Migrator, t *schema.Table, f *schema.Field) string {
	typ := mysqlType(f)
	def := typ
	switch {
	case f.SQLDefault != "":
		if f.NotNull {
			def += " NOT NULL"
		}
		def += " DEFAULT " + mysqlDefault(f, typ)
	case f.NotNull:
		if z := mysqlZeroDefault(typ); z != "" {
			def += " NOT NULL DEFAULT " + z
		}
	}
	return fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", m.ident(t.Name), m.ident(f.Name), def)
}

// mysqlModify is the MODIFY COLUMN that gives f its model type on MySQL
// (the full definition: MODIFY replaces it).
func mysqlModify(m *Migrator, t *schema.Table, f *schema.Field) string {
	def := mysqlType(f)
	if f.NotNull || f.IsPK {
		def += " NOT NULL"
	}
	if f.AutoIncrement || f.Identity {
		def += " AUTO_INCREMENT"
	}
	if f.SQLDefault != "" {
		def += " DEFAULT " + mysqlDefault(f, mysqlType(f))
	}
	return fmt.Sprintf("ALTER TABLE %s MODIFY COLUMN %s %s", m.ident(t.Name), m.ident(f.Name), def)
}

// mysqlHistory is the history table on MySQL, its index inline (MySQL 8
// has no CREATE INDEX IF NOT EXISTS).
func mysqlHistory(m *Migrator) []string {
	return []string{`CREATE TABLE IF NOT EXISTS ` + m.ident(m.history) + ` (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	table_name VARCHAR(255) NOT NULL,
	checksum VARCHAR(64) NOT NULL,
	statements LONGTEXT NOT NULL,
	applied_at DATETIME(6) NOT NULL,
	duration_ms BIGINT NOT NULL,
	KEY ` + m.ident(m.history+"_table_idx") + ` (table_name, id))` + m.mysqlTableOptions()}
}

// anyTime scans a time column whether or not the driver parses times
// (parseTime in the DSN of a *bun.DB the caller made).
type anyTime struct{ t *time.Time }

func (a anyTime) Scan(v any) error {
	switch x := v.(type) {
	case time.Time:
		*a.t = x.UTC()
		return nil
	case []byte:
		return a.parse(string(x))
	case string:
		return a.parse(x)
	case nil:
		*a.t = time.Time{}
		return nil
	}
	return fmt.Errorf("scan %T into a time", v)
}

func (a anyTime) parse(s string) error {
	if t, ok := sqlcore.ParseSQLiteTime(s); ok {
		*a.t = t
		return nil
	}
	t, err := time.Parse("2006-01-02 15:04:05.999999999", s)
	if err != nil {
		return err
	}
	*a.t = t
	return nil
}
