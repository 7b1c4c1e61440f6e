// Package memory gives chat applications conversation memory: save a turn,
// load the recent context of a session.
//
// BufferMemory keeps sessions in process memory. PersistentBufferMemory
// stores them in a Backend (see package backend) and caches each session's
// window of the newest MaxTurns turns:
//
//	m, err := memory.NewPersistentBufferMemory(b, memory.WithMaxTurns(20))
//	if err != nil {
//		return err
//	}
//	if err := m.SaveTurn(ctx, "session-1", memory.Turn{User: "hi", Agent: "hello"}); err != nil {
//		return err
//	}
//	w, err := m.LoadContext(ctx, "session-1") // w.Turns oldest first, w.TurnCount all turns
//
// Both types are safe for concurrent use. Within one process the cache of a
// PersistentBufferMemory always equals what reading the backend would
// return: SaveTurn, Clear and reads that miss the cache are serialized per
// session, a turn is cached only after the backend stored it, and a failed
// save drops the session's window, so the next load reads what was really
// stored. Writes by other processes (or by other
// PersistentBufferMemory values over the same store) become visible when a
// cached window expires, so staleness across processes is bounded by the
// cache TTL (WithCacheTTL; 0 disables the cache); InvalidateCache makes them
// visible at once.
//
// Input is validated before anything is stored; errors wrap the sentinels
// ErrInvalidSessionID, ErrInvalidTurn and ErrTurnTooLarge and are compared
// with errors.Is. Backends reuse the same rules through ValidateSessionID
// and PrepareTurn.
package memory
