//go:build cgo

package tests

import (
	"testing"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3", as langchaingo's memory/sqlite3 does
)

// The langchaingo SQLite side on mattn/go-sqlite3, as langchaingo ships it
// (peer_sqlite_bench_test.go has its schema and statements).

func init() { peerSQLiteLangchaingo = openSQLiteLangchaingo }

func openSQLiteLangchaingo(tb testing.TB, ids []string) peerStore {
	return openSQLiteLangchaingoOn(tb, "sqlite3", "file:%s?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000", ids)
}
