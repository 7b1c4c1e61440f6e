// Package cache remembers which expensive, idempotent set-up runs (such as
// ensuring a database table) have succeeded, so that callers after the first
// pay one atomic load.
//
// An [Ensurer] guards one piece of set-up. Its fast path is a single atomic
// load: no lock, no allocation. The first callers are collapsed by
// singleflight into one run, which is detached from any caller's
// cancellation and bounded by its own timeout. Only success is remembered; a
// failure is returned to every waiter and not retried before a backoff
// expires, so a broken set-up cannot turn into a retry storm.
//
// The zero Ensurer is ready to use; all methods are safe for concurrent use.
package cache
