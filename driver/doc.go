// Package driver is the contract between a memory and the storage under
// it, for people who write a backend, as database/sql/driver is for
// database/sql. An application needs package memory (and the turnkeep
// package's Open), not this one.
//
// A backend implements Backend, and to manage sessions as a product
// SessionStore (owners, listing, deletion, search, history), Replacer and
// EngineReporter. A memory hands it turns already validated and encoded
// once: a PreparedTurn from Prepare, PreparedMessages from
// PrepareMessages, stored as they are. A backend given any other validates
// it with the same functions, so every backend enforces one set of rules
// and returns the same error values (ErrInvalidTurn, ErrTurnTooLarge, ...;
// compare them with errors.Is). Sessions are named by SessionKey (tenant
// and session ID); a window is trimmed by TrimWindow's rule; search text
// is indexed and queried as SearchText and QueryTerms split it.
//
// The conversation model (Turn, Message, Window, SessionInfo, the queries
// and pages) is defined here so that a backend needs nothing from package
// memory; memory re-exports it under the same names, as the same types.
//
//	type myBackend struct{ ... }
//
//	func (b *myBackend) Save(ctx context.Context, key string, t driver.PreparedTurn) (driver.Saved, error) {
//		if !t.Prepared() {
//			var err error
//			if t, err = driver.Prepare(t.Turn, time.Now(), driver.DefaultMaxMessageBytes, nil); err != nil {
//				return driver.Saved{}, err
//			}
//		}
//		...
//	}
//
// The functions of this package are safe for concurrent use; a Backend
// must be too.
package driver
