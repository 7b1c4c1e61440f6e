// Package migrate brings a database table in line with a bun model: it
// inspects the live table, diffs it against the model, plans additive steps
// (create table, add column, create index) and applies them under a
// cross-process lock, recording each migration in a history table.
//
// An index whose columns or uniqueness changed under the same name is
// dropped and recreated in the same transaction.
//
// Destructive differences (a column the model no longer has, a changed
// type) are reported in the [Plan] and applied only when forced. Until they
// are, the model's checksum is not recorded, so the table is not taken as
// up to date and every Ensure re-plans and logs them. [Step.Breaks] tells
// the differences the model's statements cannot live with (a changed type,
// an extra NOT NULL column without a default) from those they can (an
// extra nullable column, as during a rolling deploy).
//
// On SQLite identifiers are quoted with backquotes: a double-quoted name
// that matches no column would be taken for a string literal.
//
// The cheap path is [Migrator.Check]: one catalog query and one history
// lookup tell whether the model's schema checksum is already recorded.
// [Migrator.Ensure] runs Check and, only when it says so, [Migrator.Apply].
//
//	m, err := migrate.New(db) // db is a *bun.DB on SQLite, PostgreSQL or MySQL
//	res, err := m.Ensure(ctx, migrate.Model{Value: (*User)(nil)}, false)
//	fmt.Println(res.Plan.SQL())
//
// Locking: on PostgreSQL a transaction-scoped advisory lock, on SQLite
// BEGIN IMMEDIATE; either way the re-check, the DDL and the history row are
// one transaction, so processes that start together on a fresh database all
// succeed and the history shows one migration per table.
//
// On the MySQL family (MariaDB, Galera, MySQL 8) DDL commits implicitly,
// and Galera has neither GET_LOCK nor LOCK TABLES: the lock is a lease, a
// row of turnkeep_locks taken by an autocommitted UPDATE (certification
// lets one node's take win), renewed while the migration runs and
// expiring if its holder dies; the table is made on first use, except by a
// run that may not change the schema (UpgradeOptions.NoDDL), which reports
// it missing (ErrTableMissing). Each step commits on its own and the
// history row comes last, so a run cut short is finished by the next.
// Tables are InnoDB, utf8mb4 with the exact utf8mb4_bin collation; times
// are DATETIME(6), TEXT and BLOB LONGTEXT and LONGBLOB.
//
// A Migrator is safe for concurrent use.
package migrate
