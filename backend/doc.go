// Package backend persists conversation memory: DataFlowBackend stores turns
// through the dataflow engine on SQLite or PostgreSQL, and InMemoryBackend
// keeps them in a map for tests and demos. Both implement memory.Backend
// and are safe for concurrent use.
//
//	db, err := dataflow.Open(ctx, "sqlite:///chat.db")
//	b, err := backend.NewDataFlowBackend(db)
//	mem, err := memory.NewPersistentBufferMemory(b, memory.WithMaxTurns(10))
//
// DataFlowBackend stores one row per message (role, content, metadata,
// timestamp, the turn's per-session sequence number) and one row per session
// (turn count, created and updated times). SaveTurn is one transaction of two
// statements; LoadWindow is one statement, an index range scan over the
// newest turns; TurnCount and SessionInfo read the session row.
package backend
