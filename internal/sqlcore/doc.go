// Package sqlcore is the one place where turnkeep's SQL packages (dataflow
// and migrate) meet the engines they support. Each engine is described in
// a file of its own (sqlite.go, postgres.go, mysql*.go) and registered by bun's
// dialect name; shared code asks its Dialect for forms and features
// (placeholders, quoting, time binding, prepared statements, how a write
// transaction begins, the catalog's statements, the migration lock: a
// lease row on MySQL, whose Galera clusters lack GET_LOCK), never
// for its name, so that adding an engine means adding its file. Beside
// the dialect: which errors mean a lost connection (ConnLost), the SQLite
// write-transaction lifecycle on a connection of its own (BeginImmediate,
// Commit, Rollback, Discard) and the guarded building of bun models
// (Models).
//
// Dialect is a plain value and Models is safe for concurrent use.
package sqlcore
