package dbtest

import (
	"strings"

	"github.com/turnkeep/turnkeep/migrate"
)

// Kind is what a statement is, for tests that count what the engine runs.
type Kind string

// The kinds Classify tells apart.
const (
	KindTx      Kind = "tx"      // BEGIN [IMMEDIATE], COMMIT, ROLLBACK, savepoints
	KindDDL     Kind = "ddl"     // CREATE, ALTER, DROP
	KindHistory Kind = "history" // reads or writes of the migration history
	KindCatalog Kind = "catalog" // schema inspection, migration locks
	KindData    Kind = "data"    // the models' own rows
)

// Classify returns the kind of a statement. A statement of several kinds
// (CREATE TABLE of the history table, a catalog query naming it) gets the
// first in the order of the constants.
func Classify(query string) Kind {
	switch {
	case IsTxControl(query):
		return KindTx
	case IsDDL(query):
		return KindDDL
	case IsHistory(query):
		return KindHistory
	case IsCatalog(query):
		return KindCatalog
	}
	return KindData
}

// IsTxControl reports whether query begins, ends or marks a transaction.
func IsTxControl(query string) bool {
	return hasPrefixFold(query, "BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION", "SAVEPOINT", "RELEASE", "END")
}

// IsDDL reports whether query changes the schema.
func IsDDL(query string) bool { return hasPrefixFold(query, "CREATE", "ALTER", "DROP") }

// IsHistory reports whether query names the migration history table.
func IsHistory(query string) bool {
	return strings.Contains(strings.ToLower(query), migrate.DefaultHistoryTable)
}

// catalogMarks are what a schema-inspection or migration-lock statement
// contains, lower case.
var catalogMarks = []string{
	"sqlite_master", "sqlite_schema", "pragma",
	"pg_catalog", "pg_class", "pg_attribute", "pg_namespace", "pg_index", "pg_tables",
	"information_schema", "pg_advisory",
}

// IsCatalog reports whether query inspects the schema or takes the
// migration lock.
func IsCatalog(query string) bool {
	q := strings.ToLower(query)
	for _, m := range catalogMarks {
		if strings.Contains(q, m) {
			return true
		}
	}
	return false
}

func hasPrefixFold(query string, words ...string) bool {
	q := strings.ToUpper(strings.TrimSpace(query))
	for _, w := range words {
		if strings.HasPrefix(q, w) {
			return true
		}
	}
	return false
}
