// Package turnkeep gives a Go chat application persistent conversation
// memory in one call:
//
//	mem, err := turnkeep.Open(ctx, "sqlite:///chat.db") // or "postgres://…"
//	if err != nil {
//		return err
//	}
//	defer mem.Close() // closes the database too
//	err = mem.SaveTurn(ctx, "session-1", memory.Turn{User: "hi", Agent: "hello"})
//	w, err := mem.LoadContext(ctx, "session-1") // the newest turns, oldest first
//
// Open registers the database drivers its URLs need (modernc.org/sqlite
// for sqlite://, pgx for postgres://), so a program imports no driver
// itself. What Open returns is a *memory.PersistentBufferMemory: see
// package memory for turns, messages, windows, sessions and their
// guarantees.
//
// Open is the three constructors a program with its own *dataflow.DB or
// backend calls itself, in one step: dataflow.Open, then
// backend.NewDataFlowBackend, then memory.NewPersistentBufferMemory. The
// options of each are passed through Engine, Backend and Memory.
//
// The memory Open returns is safe for concurrent use, as every
// PersistentBufferMemory is.
package turnkeep
