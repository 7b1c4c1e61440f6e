package memory

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// A snapshot is a cached window. It is never modified once published, so a
// reader may copy it without a lock.
type snapshot struct {
	turns   []Turn
	count   int
	tokens  int
	version driver.Version // the backend's version of this state; driver.UnknownVersion if it has none
	summary *Summary       // the session's summary, read with the window (WithSummarizer); never modified
}

func (s *snapshot) window() Window {
	w := Window{Turns: cloneTurns(s.turns), TurnCount: s.count, Tokens: s.tokens}
	if s.summary != nil {
		sum := *s.summary
		w.Summary = &sum
	}
	return w
}

// An entry is the per-session state of a sessionCache: the lock that orders
// a session's writes, and the cached window.
type entry struct {
	id  string
	sem chan struct{} // capacity 1; held across a write's backend I/O and the cache update

	// Guarded by sessionCache.mu.
	snap    *snapshot     // nil when nothing is cached
	checked time.Time     // when the backend last confirmed snap (the start of that read or write)
	elem    *list.Element // position in the LRU list while snap != nil
	refs    int           // goroutines pinning the entry
	gen     uint64        // bumped whenever snap changes; a read installs or confirms only if unchanged
}

// A sessionCache is an LRU cache of session windows. An entry stays in the
// map while it has a window or anyone pins it, so every goroutine working
// on a session uses the same lock and generation.
type sessionCache struct {
	max int           // cached windows
	ttl time.Duration // how long a window unconfirmed by the backend is kept

	mu      sync.Mutex // protects entries, lru and the guarded fields of every entry
	entries map[string]*entry
	lru     list.List // of *entry with a snapshot, most recently used first

	stats cacheCounters
}

func newSessionCache(max int, ttl time.Duration) *sessionCache {
	return &sessionCache{max: max, ttl: ttl, entries: make(map[string]*entry)}
}

// get returns the session's cached window, if it is live, and when the
// backend last confirmed it.
func (c *sessionCache) get(id string, now time.Time) (*snapshot, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil || !c.liveLocked(e, now) {
		return nil, time.Time{}
	}
	c.lru.MoveToFront(e.elem)
	return e.snap, e.checked
}

// pin returns the session's entry, kept in the map until unpin, with its
// live window (or nil) and generation.
func (c *sessionCache) pin(id string, now time.Time) (*entry, *snapshot, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil {
		e = &entry{id: id, sem: make(chan struct{}, 1)}
		c.entries[id] = e
	}
	e.refs++
	if !c.liveLocked(e, now) {
		return e, nil, e.gen
	}
	c.lru.MoveToFront(e.elem)
	return e, e.snap, e.gen
}

func (c *sessionCache) unpin(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unrefLocked(e)
}

// acquire pins the session's entry and takes its lock, or returns ctx's
// error. Every successful acquire must be paired with release.
func (c *sessionCache) acquire(ctx context.Context, id string, now time.Time) (*entry, error) {
	e, _, _ := c.pin(id, now)
	select {
	case e.sem <- struct{}{}:
		return e, nil
	case <-ctx.Done():
		c.unpin(e)
		return nil, ctx.Err()
	}
}

func (c *sessionCache) release(e *entry) {
	<-e.sem
	c.unpin(e)
}

func (c *sessionCache) unrefLocked(e *entry) {
	e.refs--
	if e.refs == 0 && e.snap == nil {
		delete(c.entries, e.id)
	}
}

// liveLocked reports whether e holds a window confirmed within the TTL,
// dropping an expired one.
func (c *sessionCache) liveLocked(e *entry, now time.Time) bool {
	if e.snap == nil {
		return false
	}
	if now.Sub(e.checked) >= c.ttl {
		c.stats.evictions.Add(1)
		c.dropLocked(e)
		return false
	}
	return true
}

// install caches s, confirmed at checked, unless e's window changed since
// generation gen (a write or another read got there first), evicting the
// least recently used windows over the bound.
func (c *sessionCache) install(e *entry, gen uint64, s *snapshot, checked time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.gen == gen {
		c.setLocked(e, s, checked)
	}
}

// confirm records that the backend still held e's window at checked,
// unless the window changed since generation gen.
func (c *sessionCache) confirm(e *entry, gen uint64, checked time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.gen == gen && e.snap != nil && checked.After(e.checked) {
		e.checked = checked
	}
}

// update replaces e's live window (nil if none) by f(window), confirmed at
// now; f returning its argument changes nothing, nil drops the window. The
// caller holds e's lock.
func (c *sessionCache) update(e *entry, now time.Time, f func(*snapshot) *snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s *snapshot
	if c.liveLocked(e, now) {
		s = e.snap
	}
	// A write ended: a read that began before it must not install what it
	// read, even when the window itself does not change.
	e.gen++
	switch ns := f(s); {
	case ns == s:
	case ns == nil:
		c.stats.stale.Add(1)
		c.dropLocked(e)
	default:
		c.setLocked(e, ns, now)
	}
}

// invalidate drops the session's window and makes reads already under way
// discard what they read.
func (c *sessionCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[id]; e != nil {
		if e.snap != nil {
			c.stats.invalidations.Add(1)
		}
		e.gen++
		c.dropLocked(e)
	}
}

// clear drops every window.
func (c *sessionCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		e.gen++
		c.dropLocked(e)
	}
}

func (c *sessionCache) setLocked(e *entry, s *snapshot, checked time.Time) {
	e.gen++
	e.snap = s
	e.checked = checked
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
		return
	}
	e.elem = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		c.stats.evictions.Add(1)
		c.dropLocked(c.lru.Back().Value.(*entry))
	}
}

func (c *sessionCache) dropLocked(e *entry) {
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
	}
	e.snap = nil
	if e.refs == 0 {
		delete(c.entries, e.id)
	}
}

// cloneTurns copies turns; an empty window has nil Turns.
func cloneTurns(turns []Turn) []Turn {
	if len(turns) == 0 {
		return nil
	}
	return append([]Turn(nil), turns...)
}

// CacheStats are counters of a PersistentBufferMemory's window cache since
// it was made.
type CacheStats struct {
	Hits          uint64 // loads answered from a cached window (confirmed by the backend, or within WithStaleReads)
	Misses        uint64 // loads that read the window whole
	Stale         uint64 // cached windows found changed by another writer, at a load or a save, and replaced or dropped
	Evictions     uint64 // windows dropped to stay within WithMaxCachedSessions, or expired by WithCacheTTL
	Invalidations uint64 // windows dropped by Clear, a failed save or InvalidateCache
}

type cacheCounters struct {
	hits, misses, stale, evictions, invalidations atomic.Uint64
}

func (c *cacheCounters) snapshot() CacheStats {
	return CacheStats{
		Hits:          c.hits.Load(),
		Misses:        c.misses.Load(),
		Stale:         c.stale.Load(),
		Evictions:     c.evictions.Load(),
		Invalidations: c.invalidations.Load(),
	}
}
