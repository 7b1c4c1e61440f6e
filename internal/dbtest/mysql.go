package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql" // registers "mysql"
)

// EnvMySQL names the variable holding the URL of a MySQL-family server
// (mysql://user[:password]@host:port/dbname) for tests. .ci/run starts a
// private mariadbd and sets it.
const EnvMySQL = "TURNKEEP_MYSQL_URL"

// MySQLURL creates a database with a random name on the EnvMySQL server,
// returns the URL naming it, and drops it at cleanup. It skips the test
// when EnvMySQL is not set.
func MySQLURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvMySQL)
	if base == "" {
		t.Skipf("MySQL tests skipped: set %s (e.g. mysql://root@127.0.0.1:3307/test; .ci/run starts a private mariadbd)", EnvMySQL)
	}
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	name := "tk_" + hex.EncodeToString(rb[:])
	dsn, err := MySQLDSN(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvMySQL, err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", EnvMySQL, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		admin.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE `"+name+"`"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvMySQL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// MySQLDSN turns a mysql:// URL into the driver's data source name, as
// root's tools need it (dataflow.Open does the same for the library).
func MySQLDSN(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "mysql" || u.Host == "" {
		return "", fmt.Errorf("want mysql://user[:password]@host:port/dbname")
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr = "tcp", u.Host
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	return cfg.FormatDSN(), nil
}
