// Package backend persists conversation memory: DataFlowBackend stores turns
// through the dataflow engine on SQLite or PostgreSQL, and InMemoryBackend
// keeps them in a map for tests and demos. Both implement driver.Backend
// and are safe for concurrent use.
//
//	db, err := dataflow.Open(ctx, "sqlite:///chat.db")
//	b, err := backend.NewDataFlowBackend(db)
//	mem, err := driver.NewPersistentBufferMemory(b, driver.WithMaxTurns(10))
//
// DataFlowBackend stores one row per message (role, content, metadata,
// timestamp, the turn's per-session sequence number) and one row per session
// (owner, title, turn count, token total, version, created and updated
// times). A save is atomic: on PostgreSQL one statement (common table
// expressions that upsert the session row and insert the messages, one round
// trip); on SQLite one transaction of two statements, the session row's
// upsert and the messages' insert, plus the insert of their search entries
// when the search index is on. A load is one statement, an index range scan
// over the newest turns joined with the session row; SessionInfo reads the
// session row.
//
// Each engine is one store in files of its own (sqlite.go, postgres.go),
// behind the internal store interface (store.go), registered by dialect:
// it holds the engine's SQL and the choices that differ, and the shared
// flows ask it for features rather than compare dialect names.
package backend
