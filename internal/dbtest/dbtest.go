// Package dbtest gives tests a fresh database on every dialect: SQLite in a
// file under t.TempDir() always, PostgreSQL, in a schema of its own
// dropped at cleanup, when TURNKEEP_POSTGRES_URL is set, and the MySQL
// family, in a database of its own, when TURNKEEP_MYSQL_URL is set. It also starts private servers: a mariadbd (MariaDB) and a
// three-node Galera cluster on loopback (Galera). It imports the drivers,
// so only tests and programs may import it.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// EnvPostgres names the variable holding the PostgreSQL URL for tests.
const EnvPostgres = "TURNKEEP_POSTGRES_URL"

// Dialect is one database a test runs on.
type Dialect struct {
	Name string // "sqlite", "pg" or "mysql"
	// URL returns a URL of a fresh, empty database (SQLite file,
	// PostgreSQL schema or MySQL database), removed when the test ends.
	URL func(t testing.TB) string
}

// dialects are the dialects Run runs on, in its order.
var dialects = []Dialect{{Name: "sqlite", URL: SQLiteURL}, {Name: "pg", URL: PostgresURL}, {Name: "mysql", URL: MySQLURL}}

// Run runs fn as a subtest on every dialect: SQLite always, PostgreSQL
// with EnvPostgres, the MySQL family with EnvMySQL; without its variable
// a subtest is skipped with a message naming it.
func Run(t *testing.T, fn func(t *testing.T, d Dialect)) {
	t.Helper()
	for _, d := range dialects {
		t.Run(d.Name, func(t *testing.T) { fn(t, d) })
	}
}

// SQLiteURL returns the URL of a new SQLite file under t.TempDir().
func SQLiteURL(t testing.TB) string {
	return "sqlite:///" + filepath.Join(t.TempDir(), "test.db")
}

// PostgresURL creates a schema with a random name, returns the
// EnvPostgres URL with search_path set to it, and drops it at cleanup. It
// skips the test when EnvPostgres is not set.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		t.Skipf("PostgreSQL tests skipped: set %s (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", EnvPostgres)
	}
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	schema := "tk_" + strings.ToLower(hex.EncodeToString(rb[:]))
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open %s: %v", EnvPostgres, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgres, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
