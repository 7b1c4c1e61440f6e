// Package testutil holds helpers that tests of several packages share: a
// clock that moves only when told, and a bounded wait for goroutines. Only
// tests import it.
package testutil

import (
	"sync"
	"testing"
	"time"
)

// Clock is a clock that moves only when told. Its Now method fits the
// injectable clocks of the packages under test. Safe for concurrent use.
type Clock struct {
	mu  sync.Mutex // protects now
	now time.Time
}

// NewClock returns a Clock set to a fixed instant.
func NewClock() *Clock {
	return &Clock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Wait waits for wg, or fails the test if the goroutines are still running
// after d (a deadlock, most likely).
func Wait(t testing.TB, wg *sync.WaitGroup, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("goroutines still running after %v: deadlock?", d)
	}
}
