// Package conformance checks that a storage backend keeps turnkeep's
// backend contract (package driver): atomic and idempotent saves, the
// newest-window rules, token budgets, appends, guarded saves (Turn.Seq),
// forks, clear and replace, sessions, owners, tenants, search, erasure,
// and the coherence protocol (Load with a known version).
//
// A backend writer calls Run from a test of their own:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) conformance.Backend {
//			return mybackend.New(t.TempDir())
//		})
//	}
//
// Each check is a subtest of its own, with a fresh backend. The optional
// interfaces (driver.SessionStore, driver.Replacer, driver.Forker,
// driver.SummaryStore) are checked when the backend implements them; the
// subtests that need one it lacks are skipped, saying which. newBackend
// may skip a subtest itself, by its name (t.Name()), for a part of the
// contract the backend does not keep yet.
//
// The package uses plain package testing only, so importing it adds no
// dependency to a backend's tests. The subtests run one after another;
// some call the backend from several goroutines at once, as
// driver.Backend allows.
package conformance
