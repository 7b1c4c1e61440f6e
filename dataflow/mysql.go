package dataflow

import (
	"strings"

	"github.com/uptrace/bun/schema"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// What the MySQL family (MariaDB, Galera, MySQL 8) needs of the engine's
// SQL and errors beyond the other dialects.

// isMySQLDuplicate reports whether err is MySQL's duplicate key error
// (1062) on the index named name: "Duplicate entry '…' for key 'name'"
// (MariaDB) or "… for key 'table.name'" (MySQL 8).
func isMySQLDuplicate(err error, name string) bool {
	if !sqlcore.IsMySQLErrno(err, sqlcore.MySQLDuplicateKey) {
		return false
	}
	msg := err.Error()
	i := strings.LastIndex(msg, " for key '")
	if i < 0 {
		return false
	}
	key := strings.TrimSuffix(msg[i+len(" for key '"):], "'")
	return key == name || strings.HasSuffix(key, "."+name)
}

// missingColumnAny is missingColumn, MySQL's "Unknown column 'c' in …"
// (1054) included.
func missingColumnAny(err error) (string, bool) {
	if !sqlcore.IsMySQLErrno(err, sqlcore.MySQLUnknownColumn) {
		return missingColumn(err)
	}
	_, rest, ok := strings.Cut(err.Error(), "Unknown column '")
	if !ok {
		return "", true
	}
	name, _, _ := strings.Cut(rest, "' in ")
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:] // t.c
	}
	return name, true
}

// mysqlConflict is the upsert clause on MySQL: ON DUPLICATE KEY UPDATE
// every data column to the inserted value (VALUES(c), which MariaDB and
// MySQL 8 both read), or the key to itself when there is none, which
// keeps the row as it is. Unlike PostgreSQL's ON CONFLICT (pk), it fires on
// a clash with any unique index of the table, not only the primary key.
func mysqlConflict(s *statements, t *schema.Table) string {
	sets := make([]string, 0, len(t.DataFields))
	for _, f := range t.DataFields {
		sets = append(sets, s.ident(f)+" = VALUES("+s.ident(f)+")")
	}
	if len(sets) == 0 {
		pk := s.ident(t.PKs[0])
		sets = append(sets, pk+" = "+pk)
	}
	return " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
}

// mysqlDefaultRow is the insert of a row whose every column is left to
// the database: MySQL has no DEFAULT VALUES.
const mysqlDefaultRow = " () VALUES ()"
