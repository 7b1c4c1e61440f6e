// Package memory gives chat applications conversation memory: save a turn,
// append to it as an answer streams, load the recent context of a session.
//
// A Turn is one exchange: the user's message and everything up to the
// answer, as Messages with roles, tool calls, tool results and parts, or as
// the shorthand User and Agent. A window holds the newest whole turns
// within WithMaxTurns and WithTokenBudget, so it never separates a tool
// call from its result, and always the newest turn, even alone over the
// budget. Tokens are counted once per message, when it is stored
// (WithTokenCounter).
//
// BufferMemory keeps sessions in process memory. PersistentBufferMemory
// stores them in a backend (a driver.Backend: see package backend) and
// caches each session's
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
// Both types are safe for concurrent use.
//
// The cache of a PersistentBufferMemory is coherent across processes by
// default: after a SaveTurn, AppendMessages or Clear has returned on any process (or on any
// other memory over the same store), the next LoadContext on every process
// shows it. A driver.Backend (both backends in package backend)
// gives every stored state of a session a version; LoadContext sends the
// cached window's version with its one read, and the backend answers with
// the session row alone when nothing changed, or with the new window. So a
// hit costs one small round trip and reads no turns. A save appends to a
// cached window only when the backend's answer proves the window was the
// session's newest state just before it (turn count and version moved by
// exactly this turn), so a save never appends onto a stale window; else the
// window is dropped (an append likewise). Within one process, writes are serialized
// per session, a turn is cached only after the backend stored it, and a
// failed save drops the session's window.
//
// WithStaleReads(d) trades that guarantee for loads without a round trip:
// a window confirmed within d is served as it is, so another process's
// writes can go unseen for up to d (this process's own never are). A
// backend that does not version its sessions is read through on every load,
// unless WithStaleReads allows caching it.
//
// A PersistentBufferMemory logs to WithLogger (nothing by default; never
// message content unless WithLogContent), and records a span of each
// operation (SpanPrefix) and the metrics MetricOperationDuration and the
// cache counters with OpenTelemetry's API (WithTracerProvider,
// WithMeterProvider; otel's global providers by default). With otel's
// default no-op providers nothing is recorded and an operation costs one
// nil check more.
//
// Input is validated before anything is stored; errors wrap the sentinels
// ErrInvalidSessionID, ErrInvalidTurn and ErrTurnTooLarge and are compared
// with errors.Is. Backends reuse the same rules, and return the same
// error values, through package driver, which defines what a backend
// implements (driver.Backend, driver.SessionStore) and the types this
// package re-exports (Turn, Message, Window, ...).
package memory
