package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults used by the zero Ensurer.
const (
	DefaultTimeout    = 30 * time.Second
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// ErrBackoff is wrapped into the error returned while an Ensurer waits out
// the backoff after a failed run; the last run's error is wrapped too.
var ErrBackoff = errors.New("retry suppressed by backoff")

// Ensurer runs a set-up function until it succeeds once, then never again.
//
// Configure the exported fields before first use; they must not change
// afterwards.
type Ensurer struct {
	Timeout    time.Duration // bound on one shared run; 0 means DefaultTimeout
	MinBackoff time.Duration // wait after the first failure; 0 means DefaultMinBackoff
	MaxBackoff time.Duration // cap of the doubling wait; 0 means DefaultMaxBackoff

	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time

	ready atomic.Bool
	sf    singleflight.Group

	mu       sync.Mutex // protects failures, retryAt, lastErr
	failures int
	retryAt  time.Time
	lastErr  error
}

// Ready reports whether a run has succeeded.
func (e *Ensurer) Ready() bool { return e.ready.Load() }

// MarkReady records success without running anything.
func (e *Ensurer) MarkReady() { e.ready.Store(true) }

// Reset forgets a success (and any backoff), so the next Ensure runs again.
func (e *Ensurer) Reset() {
	e.mu.Lock()
	e.failures, e.retryAt, e.lastErr = 0, time.Time{}, nil
	e.mu.Unlock()
	e.ready.Store(false)
}

// Ensure returns nil at once if a run of fn has already succeeded. Otherwise
// it joins the run in flight or starts one. While a backoff after a failure
// lasts, Ensure returns the last error wrapped with ErrBackoff without
// running fn.
//
// The shared run uses context.WithoutCancel(ctx) with the Ensurer's timeout,
// so one caller giving up does not fail the others; each caller still
// returns ctx.Err() as soon as its own ctx is done.
func (e *Ensurer) Ensure(ctx context.Context, fn func(context.Context) error) error {
	if e.ready.Load() {
		return nil
	}
	return e.ensureSlow(ctx, fn)
}

func (e *Ensurer) ensureSlow(ctx context.Context, fn func(context.Context) error) error {
	if err := e.backoffErr(); err != nil {
		return err
	}
	ch := e.sf.DoChan("", func() (any, error) {
		if e.ready.Load() { // a run finished between our check and DoChan
			return nil, nil
		}
		if err := e.backoffErr(); err != nil {
			return nil, err
		}
		runCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.timeout())
		defer cancel()
		err := safeCall(runCtx, fn)
		e.record(err)
		return nil, err
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// safeCall turns a panic in fn into an error, so a waiter never hangs and
// the process does not die from a set-up bug.
func safeCall(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic during ensure: %v", r)
		}
	}()
	return fn(ctx)
}

func (e *Ensurer) record(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil {
		e.failures, e.retryAt, e.lastErr = 0, time.Time{}, nil
		e.ready.Store(true)
		return
	}
	// minBackoff doubled per earlier failure, capped at maxBackoff. Compare
	// before shifting: minBackoff<<failures can overflow int64 and wrap to
	// a small positive wait.
	wait := e.maxBackoff()
	if minWait := e.minBackoff(); minWait <= wait>>min(e.failures, 63) {
		wait = minWait << e.failures
	}
	e.failures++
	e.retryAt = e.now().Add(wait)
	e.lastErr = err
}

func (e *Ensurer) backoffErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lastErr == nil || !e.now().Before(e.retryAt) {
		return nil
	}
	return fmt.Errorf("%w until %s: %w", ErrBackoff, e.retryAt.Format(time.RFC3339Nano), e.lastErr)
}

func (e *Ensurer) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Ensurer) timeout() time.Duration {
	if e.Timeout > 0 {
		return e.Timeout
	}
	return DefaultTimeout
}

func (e *Ensurer) minBackoff() time.Duration {
	if e.MinBackoff > 0 {
		return e.MinBackoff
	}
	return DefaultMinBackoff
}

func (e *Ensurer) maxBackoff() time.Duration {
	if e.MaxBackoff > 0 {
		return e.MaxBackoff
	}
	return DefaultMaxBackoff
}
