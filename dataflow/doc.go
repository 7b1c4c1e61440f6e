// Package dataflow is a small data engine over bun: register model structs,
// run typed CRUD on them, and let each model's table be ensured lazily, once
// per process.
//
//	db, err := dataflow.Open(ctx, "sqlite:///app.db")
//	users, err := dataflow.Register[User](db, dataflow.WithIndex("users_email_idx", "email"))
//	err = users.Create(ctx, &User{Email: "ann@example.com"})
//	list, err := users.List(ctx, dataflow.Query{Filter: dataflow.Filter{"age": dataflow.Gte(18)}, Limit: 10})
//
// # The table ensurer
//
// Every operation first asks whether its table is ready. After the first
// success in this process that is one atomic load: no lock, no allocation,
// no SQL. The first callers are collapsed into one run (singleflight), which
// does the cheapest sufficient check (one catalog query and one lookup of the
// model's schema checksum in the migration history) and migrates only when
// the table is missing or its checksum differs; see package migrate. A failed
// run is not remembered as success: every waiter gets the error (wrapped in
// ErrEnsureFailed), and retries wait out a doubling backoff, so broken DDL
// cannot become a retry storm. WithAutoMigrate(false) never runs DDL,
// WithExistingSchemaMode trusts the schema outright, WithSkipTableChecks
// skips the first-use check.
//
// # Schema changes
//
// Additive changes (a new table, column or index, an index redefined) are
// applied. A destructive difference is applied only with
// WithForceDestructive, and then only where the dialect can (SQLite cannot
// change a column's type). Until it is, the rule is whether the model's
// statements still work on the live table:
//
//   - A model column whose type changed, or a live column the model lacks
//     that is NOT NULL without a default (every insert would fail), breaks
//     the model: EnsureTable and every operation on the table return
//     ErrDestructiveChange, wrapped in ErrEnsureFailed and naming the
//     table, the column and the change (ErrSchemaMismatch with
//     auto-migration off).
//   - A live column the model lacks that is nullable or has a default is
//     harmless and left alone, with a warning in the log: it is the normal
//     state of a rolling deploy, where a newer program added a column that
//     this one does not know. (WithForceDestructive drops it, so do not
//     give it to an older program while a newer one runs.)
//
// Whatever the mode, a model column missing from the live table (dropped
// by another program, or never there under WithExistingSchemaMode) fails
// each statement that names it with ErrSchemaMismatch, naming the column;
// on SQLite column names are quoted with backquotes, which, unlike double
// quotes, never fall back to a string literal.
//
// # Statements
//
// Each operation on a ready table runs exactly its own statement: one for
// Create, Read, Update, Delete, Upsert, List and Count, one per batch for the
// bulk operations. Every value is a bound parameter (? on SQLite and MySQL, $n on
// PostgreSQL); identifiers come only from registered models, and a filter or
// order naming a column the model lacks is ErrUnknownColumn before any SQL
// runs. Hooks given with WithQueryHook see every statement.
//
// # URLs
//
//	sqlite:///relative/path.db    a file relative to the working directory
//	sqlite:////absolute/path.db   an absolute path
//	sqlite:///:memory:, :memory:  an in-memory database shared by every caller
//	postgres://… , postgresql://… PostgreSQL, through pgx
//	mysql://user[:password]@host:port/dbname[?params]
//	                              the MySQL family (MariaDB, Galera, MySQL),
//	                              through github.com/go-sql-driver/mysql
//
// MySQL connections get parseTime and loc=UTC, the driver's own argument
// interpolation (one round trip per statement; the driver escapes every
// value), matched-row counts, a UTC session time zone and a strict
// sql_mode; a params query adds or overrides driver parameters and session
// variables. On a Galera node Open also sets wsrep_sync_wait=3, so that a
// read on one node sees what another acknowledged, unless the URL sets it.
// Tables are InnoDB with the utf8mb4_bin collation (exact comparisons),
// times DATETIME(6). DDL commits implicitly there, and the migration lock
// is a lease row (Galera has no GET_LOCK): see package migrate. Upsert is
// ON DUPLICATE KEY UPDATE, which also fires on a clash with another unique
// index. INSERT … RETURNING (generated keys) needs MariaDB 10.5 or later.
//
// SQLite files get WAL, a busy timeout (WithBusyTimeout), synchronous=NORMAL
// (WithSynchronousFull for FULL) and foreign keys; transactions begin with
// BEGIN IMMEDIATE so concurrent writers wait rather than fail. The in-memory
// database runs on a single connection: inside RunInTx use only the
// transaction. The program imports the database/sql drivers, as with
// database/sql itself:
//
//	import _ "modernc.org/sqlite"             // sqlite://
//	import _ "github.com/jackc/pgx/v5/stdlib" // postgres://
//	import _ "github.com/go-sql-driver/mysql" // mysql://
//
// # Transactions
//
// DB.RunInTx runs a function in a transaction; Table.WithTx binds a table to
// it. The tables passed to RunInTx (or, if none, every registered table) are
// made ready before the transaction begins.
//
// # Logs, metrics and traces
//
// A DB logs to WithLogger (ensure runs, migrations, retries, unknown
// commit outcomes, statements slower than WithSlowThreshold) and, with
// OpenTelemetry's API (WithTracerProvider, WithMeterProvider; otel's
// global providers by default), records a span of every statement
// (SpanStatement) and ensure run (SpanEnsure), and its Stats as
// metrics. With otel's default no-op providers no span is started.
//
// A DB and its Tables are safe for concurrent use; a Tx is not. A nil or
// zero DB, Table or Tx is not usable, but safe: every method that returns
// an error returns ErrClosed, as after Close, and none panics.
package dataflow
