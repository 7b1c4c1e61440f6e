// Package sqlcore is the one place where turnkeep's SQL packages (dataflow
// and migrate) meet the two dialects they support: placeholders, quoting
// and time binding (Dialect), which errors mean a lost connection
// (ConnLost), the SQLite write-transaction lifecycle on a connection of
// its own (BeginImmediate, Commit, Rollback, Discard), the cross-process
// migration lock (Locked) and the guarded building of bun models (Models).
//
// Dialect is a plain value and Models is safe for concurrent use.
package sqlcore
