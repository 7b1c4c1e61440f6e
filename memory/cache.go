package memory

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// A snapshot is a cached window. It is never modified once published, so a
// reader may copy it without a lock.
type snapshot struct {
	turns    []Turn
	count    int
	loadedAt time.Time // when the read-through that produced it started
}

func (s *snapshot) fresh(now time.Time, ttl time.Duration) bool {
	return now.Sub(s.loadedAt) < ttl
}

func (s *snapshot) window() Window {
	return Window{Turns: cloneTurns(s.turns), TurnCount: s.count}
}

// An entry is the per-session state of a sessionCache: the lock that orders
// backend I/O for the session, and the cached window.
type entry struct {
	id  string
	sem chan struct{} // capacity 1; held across backend I/O and the cache update

	// Guarded by sessionCache.mu.
	snap *snapshot     // nil when nothing is cached
	elem *list.Element // position in the LRU list while snap != nil
	refs int           // goroutines holding or waiting for sem
	gen  uint64        // bumped by invalidate; a read-through installs only if unchanged
}

// A sessionCache is an LRU cache of session windows. An entry stays in the
// map while it has a window or anyone holds or waits for its lock, so every
// goroutine working on a session uses the same lock.
type sessionCache struct {
	max int // cached windows

	mu      sync.Mutex // protects entries, lru and the guarded fields of every entry
	entries map[string]*entry
	lru     list.List // of *entry with a snapshot, most recently used first
}

func newSessionCache(max int) *sessionCache {
	return &sessionCache{max: max, entries: make(map[string]*entry)}
}

// get returns the fresh cached window of the session, or nil.
func (c *sessionCache) get(id string, now time.Time, ttl time.Duration) *snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil || e.snap == nil || !e.snap.fresh(now, ttl) {
		return nil
	}
	c.lru.MoveToFront(e.elem)
	return e.snap
}

// acquire returns the session's entry with its lock held, or ctx's error.
// Every successful acquire must be paired with release.
func (c *sessionCache) acquire(ctx context.Context, id string) (*entry, error) {
	c.mu.Lock()
	e := c.entries[id]
	if e == nil {
		e = &entry{id: id, sem: make(chan struct{}, 1)}
		c.entries[id] = e
	}
	e.refs++
	c.mu.Unlock()

	select {
	case e.sem <- struct{}{}:
		return e, nil
	case <-ctx.Done():
		c.mu.Lock()
		c.unrefLocked(e)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (c *sessionCache) release(e *entry) {
	<-e.sem
	c.mu.Lock()
	c.unrefLocked(e)
	c.mu.Unlock()
}

func (c *sessionCache) unrefLocked(e *entry) {
	e.refs--
	if e.refs == 0 && e.snap == nil {
		delete(c.entries, e.id)
	}
}

// peek returns the fresh cached window of e, or nil, and e's generation.
// The caller holds e's lock.
func (c *sessionCache) peek(e *entry, now time.Time, ttl time.Duration) (*snapshot, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.snap == nil || !e.snap.fresh(now, ttl) {
		return nil, e.gen
	}
	c.lru.MoveToFront(e.elem)
	return e.snap, e.gen
}

// install caches s for e unless e was invalidated since generation gen,
// evicting the least recently used windows over the bound. The caller holds
// e's lock.
func (c *sessionCache) install(e *entry, gen uint64, s *snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.gen != gen {
		return
	}
	c.setLocked(e, s)
}

// update replaces e's window by f(window) while it is fresh; f returning nil
// drops it. The caller holds e's lock.
func (c *sessionCache) update(e *entry, now time.Time, ttl time.Duration, f func(*snapshot) *snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.snap == nil {
		return
	}
	if !e.snap.fresh(now, ttl) {
		c.dropLocked(e)
		return
	}
	if s := f(e.snap); s != nil {
		c.setLocked(e, s)
	} else {
		c.dropLocked(e)
	}
}

// invalidate drops the session's window and makes read-throughs already
// under way discard what they read.
func (c *sessionCache) invalidate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[id]; e != nil {
		e.gen++
		c.dropLocked(e)
	}
}

func (c *sessionCache) setLocked(e *entry, s *snapshot) {
	e.snap = s
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
		return
	}
	e.elem = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
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
