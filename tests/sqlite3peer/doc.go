// Package sqlite3peer holds the SQLite peer benchmarks: turnkeep beside
// langchaingo's SQLite chat history on mattn/go-sqlite3 (cgo), in one run.
// It is a module of its own, so that the core module does not require
// mattn/go-sqlite3; it has no code, only benchmarks:
//
//	go test -run '^$' -bench 'BenchmarkPeer' -benchtime 2000x -count 5 ./tests/sqlite3peer/
package sqlite3peer
