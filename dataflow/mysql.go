package dataflow

import (
	"strings"

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
