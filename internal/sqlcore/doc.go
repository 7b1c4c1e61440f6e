// Package sqlcore is the one place where turnkeep's SQL packages (dataflow
// and migrate) meet the three dialects they support (SQLite, PostgreSQL and the
// MySQL family): placeholders, quoting
// and time binding (Dialect), which errors mean a lost connection
// (ConnLost), the SQLite write-transaction lifecycle on a connection of
// its own (BeginImmediate, Commit, Rollback, Discard), the cross-process
// migration lock (Locked; a lease row on MySQL) and the guarded building
// of bun models (Models). MySQL's specifics live in the *_mysql.go files.
//
// Dialect is a plain value and Models is safe for concurrent use.
package sqlcore
