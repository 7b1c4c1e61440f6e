package cache

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/turnkeep/turnkeep/internal/testutil"
)

// hangTimeout bounds every wait for Ensure to return. Inside a synctest
// bubble time is fake, so a hung Ensure trips it at once; outside it is a
// real (generous) deadline.
const hangTimeout = 10 * time.Second

// recvErr returns the next error from ch, failing the test if none arrives
// before hangTimeout.
func recvErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(hangTimeout):
		t.Fatalf("Ensure did not return within %v; want it to return", hangTimeout)
		return nil
	}
}

// ensureAsync starts n goroutines calling e.Ensure(ctx, fn) and returns the
// channel their results arrive on.
func ensureAsync(e *Ensurer, ctx context.Context, fn func(context.Context) error, n int) <-chan error {
	errs := make(chan error, n)
	for range n {
		go func() { errs <- e.Ensure(ctx, fn) }()
	}
	return errs
}

// countingFn returns fn that counts its runs and returns *result.
func countingFn(calls *atomic.Int64, result *atomic.Pointer[error]) func(context.Context) error {
	return func(context.Context) error {
		calls.Add(1)
		if p := result.Load(); p != nil {
			return *p
		}
		return nil
	}
}

func TestEnsureSuccessIsCached(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// prepare runs before the checked calls; it gets the Ensurer and the
		// counted fn and may call either.
		prepare   func(t *testing.T, e *Ensurer, fn func(context.Context) error)
		calls     int   // Ensure calls after prepare
		wantRuns  int64 // total runs of fn, prepare included
		wantReady bool
	}{
		{
			name:      "fn runs once over many sequential calls",
			prepare:   func(*testing.T, *Ensurer, func(context.Context) error) {},
			calls:     100,
			wantRuns:  1,
			wantReady: true,
		},
		{
			name:      "MarkReady skips fn",
			prepare:   func(_ *testing.T, e *Ensurer, _ func(context.Context) error) { e.MarkReady() },
			calls:     100,
			wantRuns:  0,
			wantReady: true,
		},
		{
			name: "Reset makes fn run again",
			prepare: func(t *testing.T, e *Ensurer, fn func(context.Context) error) {
				require.NoError(t, e.Ensure(ctx, fn))
				require.True(t, e.Ready(), "Ready() before Reset = false; want true")
				e.Reset()
				require.False(t, e.Ready(), "Ready() after Reset = true; want false")
			},
			calls:     100,
			wantRuns:  2,
			wantReady: true,
		},
		{
			name: "Reset after MarkReady makes fn run",
			prepare: func(t *testing.T, e *Ensurer, _ func(context.Context) error) {
				e.MarkReady()
				e.Reset()
			},
			calls:     3,
			wantRuns:  1,
			wantReady: true,
		},
		{
			name:      "no call leaves it not ready",
			prepare:   func(*testing.T, *Ensurer, func(context.Context) error) {},
			calls:     0,
			wantRuns:  0,
			wantReady: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Ensurer // the zero Ensurer is ready to use
			var runs atomic.Int64
			fn := func(context.Context) error { runs.Add(1); return nil }
			tt.prepare(t, &e, fn)
			for i := range tt.calls {
				require.NoError(t, e.Ensure(ctx, fn), "call %d", i)
			}
			assert.Equal(t, tt.wantRuns, runs.Load(), "fn runs: got %d; want %d", runs.Load(), tt.wantRuns)
			assert.Equal(t, tt.wantReady, e.Ready(), "Ready(): got %v; want %v", e.Ready(), tt.wantReady)
		})
	}
}

func TestEnsureConcurrentCallersShareOneRun(t *testing.T) {
	const n = 64
	synctest.Test(t, func(t *testing.T) {
		var e Ensurer
		var runs atomic.Int64
		release := make(chan struct{})
		fn := func(context.Context) error {
			runs.Add(1)
			<-release
			return nil
		}

		errs := ensureAsync(&e, context.Background(), fn, n)
		// Every caller is now parked: one run blocked in fn and all n
		// callers waiting on it.
		synctest.Wait()
		require.Equal(t, int64(1), runs.Load(), "runs while %d callers wait: got %d; want 1", n, runs.Load())
		require.Empty(t, errs, "callers returned before the run finished")
		require.False(t, e.Ready(), "Ready() during the run = true; want false")

		close(release)
		for i := range n {
			assert.NoError(t, recvErr(t, errs), "caller %d", i)
		}
		assert.Equal(t, int64(1), runs.Load(), "runs: got %d; want 1", runs.Load())
		assert.True(t, e.Ready(), "Ready() = false; want true")

		// The hit path under concurrency: no further runs.
		errs = ensureAsync(&e, context.Background(), fn, n)
		for i := range n {
			assert.NoError(t, recvErr(t, errs), "hit caller %d", i)
		}
		assert.Equal(t, int64(1), runs.Load(), "runs after hits: got %d; want 1", runs.Load())
	})
}

func TestEnsureCallerCancelDoesNotCancelRun(t *testing.T) {
	const others = 8
	synctest.Test(t, func(t *testing.T) {
		var e Ensurer
		var runs atomic.Int64
		entered := make(chan struct{})
		release := make(chan struct{})
		runErrAtEnd := make(chan error, 1)
		fn := func(ctx context.Context) error {
			runs.Add(1)
			close(entered)
			<-release
			runErrAtEnd <- ctx.Err()
			return nil
		}

		firstCtx, cancel := context.WithCancel(context.Background())
		defer cancel()
		first := ensureAsync(&e, firstCtx, fn, 1)
		<-entered // the first caller started the run
		rest := ensureAsync(&e, context.Background(), fn, others)
		synctest.Wait()

		cancel()
		// The first caller returns while fn is still blocked.
		require.ErrorIs(t, recvErr(t, first), context.Canceled)
		synctest.Wait()
		require.Empty(t, rest, "other callers returned while the run is in flight")
		require.Empty(t, runErrAtEnd, "the run ended when the first caller gave up")

		close(release)
		for i := range others {
			assert.NoError(t, recvErr(t, rest), "waiter %d", i)
		}
		assert.NoError(t, <-runErrAtEnd, "run ctx.Err() at the end; want nil")
		assert.Equal(t, int64(1), runs.Load(), "runs: got %d; want 1", runs.Load())
		assert.True(t, e.Ready(), "Ready() = false; want true")
	})
}

func TestEnsureRunTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{name: "configured", timeout: 5 * time.Second, want: 5 * time.Second},
		{name: "zero means default", timeout: 0, want: DefaultTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/deadline", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := Ensurer{Timeout: tt.timeout}
				start := time.Now() // fake: does not move while fn runs
				var deadline time.Time
				var ok bool
				err := e.Ensure(context.Background(), func(ctx context.Context) error {
					deadline, ok = ctx.Deadline()
					return nil
				})
				require.NoError(t, err)
				require.True(t, ok, "run ctx has no deadline; want one")
				assert.Equal(t, tt.want, deadline.Sub(start), "deadline - start: got %v; want %v", deadline.Sub(start), tt.want)
			})
		})
		t.Run(tt.name+"/overrun", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := Ensurer{Timeout: tt.timeout, Now: testutil.NewClock().Now}
				start := time.Now()
				var seen error
				var elapsed time.Duration
				err := e.Ensure(context.Background(), func(ctx context.Context) error {
					<-ctx.Done() // a hang here is reported by synctest as a deadlock
					seen, elapsed = ctx.Err(), time.Since(start)
					return ctx.Err()
				})
				require.ErrorIs(t, seen, context.DeadlineExceeded, "fn saw ctx.Err()")
				assert.Equal(t, tt.want, elapsed, "fn ran for %v; want the timeout %v", elapsed, tt.want)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.False(t, e.Ready(), "Ready() after a timed-out run = true; want false")
			})
		})
	}
}

func TestEnsureCancelledCallerDoesNotTimeOutRun(t *testing.T) {
	// A caller's own deadline is not the run's: WithoutCancel drops it and
	// the Ensurer's Timeout replaces it.
	synctest.Test(t, func(t *testing.T) {
		e := Ensurer{Timeout: time.Minute}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		deadlines := make(chan time.Time, 1)
		release := make(chan struct{})
		errs := ensureAsync(&e, ctx, func(ctx context.Context) error {
			d, _ := ctx.Deadline()
			deadlines <- d
			<-release
			return ctx.Err()
		}, 1)
		require.ErrorIs(t, recvErr(t, errs), context.DeadlineExceeded, "caller with a 1s deadline")
		assert.Equal(t, time.Second, time.Since(start), "caller returned after %v; want 1s", time.Since(start))
		assert.Equal(t, time.Minute, (<-deadlines).Sub(start), "run deadline; want the Ensurer's Timeout")
		close(release)
		synctest.Wait()
		assert.True(t, e.Ready(), "Ready() = false; want true (the run outlived its caller and succeeded)")
	})
}

func TestEnsureFailureIsNotCached(t *testing.T) {
	const waiters = 16
	const burst = 1000
	synctest.Test(t, func(t *testing.T) {
		clock := testutil.NewClock()
		e := Ensurer{MinBackoff: time.Second, MaxBackoff: time.Minute, Now: clock.Now}
		cause := errors.New("create table: boom")
		var runs atomic.Int64
		var fail atomic.Bool
		fail.Store(true)
		release := make(chan struct{})
		fn := func(context.Context) error {
			runs.Add(1)
			<-release
			if fail.Load() {
				return cause
			}
			return nil
		}
		ctx := context.Background()

		// Every concurrent waiter gets the run's error.
		errs := ensureAsync(&e, ctx, fn, waiters)
		synctest.Wait()
		close(release) // later runs do not block
		for i := range waiters {
			assert.ErrorIs(t, recvErr(t, errs), cause, "waiter %d", i)
		}
		require.Equal(t, int64(1), runs.Load(), "runs: got %d; want 1", runs.Load())
		require.False(t, e.Ready(), "Ready() after a failure = true; want false")

		// During the backoff: no run, and the error names both.
		err := e.Ensure(ctx, fn)
		require.ErrorIs(t, err, ErrBackoff)
		require.ErrorIs(t, err, cause)
		errs = ensureAsync(&e, ctx, fn, burst)
		for i := range burst {
			err := recvErr(t, errs)
			if !errors.Is(err, ErrBackoff) || !errors.Is(err, cause) {
				t.Fatalf("burst call %d: got %v; want ErrBackoff wrapping %v", i, err, cause)
			}
		}
		require.Equal(t, int64(1), runs.Load(), "runs after a burst during backoff: got %d; want 1", runs.Load())

		// Just before retryAt: still suppressed.
		clock.Advance(time.Second - time.Nanosecond)
		require.ErrorIs(t, e.Ensure(ctx, fn), ErrBackoff, "1ns before retryAt")
		require.Equal(t, int64(1), runs.Load(), "runs 1ns before retryAt: got %d; want 1", runs.Load())

		// At retryAt the next call runs fn again; it fails again.
		clock.Advance(time.Nanosecond)
		require.ErrorIs(t, e.Ensure(ctx, fn), cause)
		require.Equal(t, int64(2), runs.Load(), "runs after the backoff: got %d; want 2", runs.Load())
		require.ErrorIs(t, e.Ensure(ctx, fn), ErrBackoff, "right after the second failure")

		// Once fn succeeds: Ready, and no more runs.
		fail.Store(false)
		clock.Advance(time.Hour)
		require.NoError(t, e.Ensure(ctx, fn))
		require.True(t, e.Ready(), "Ready() after success = false; want true")
		for range 10 {
			require.NoError(t, e.Ensure(ctx, fn))
		}
		assert.Equal(t, int64(3), runs.Load(), "runs: got %d; want 3", runs.Load())

		// Success forgets the failures: after a Reset the backoff restarts
		// at MinBackoff.
		e.Reset()
		fail.Store(true)
		require.ErrorIs(t, e.Ensure(ctx, fn), cause)
		clock.Advance(time.Second)
		require.ErrorIs(t, e.Ensure(ctx, fn), cause, "after MinBackoff; want a new run")
		assert.Equal(t, int64(5), runs.Load(), "runs: got %d; want 5", runs.Load())
	})
}

func TestEnsureResetClearsBackoff(t *testing.T) {
	clock := testutil.NewClock()
	e := Ensurer{MinBackoff: time.Hour, Now: clock.Now}
	cause := errors.New("boom")
	var runs atomic.Int64
	var result atomic.Pointer[error]
	result.Store(&cause)
	fn := countingFn(&runs, &result)
	ctx := context.Background()

	require.ErrorIs(t, e.Ensure(ctx, fn), cause)
	require.ErrorIs(t, e.Ensure(ctx, fn), ErrBackoff)
	e.Reset()
	result.Store(nil)
	require.NoError(t, e.Ensure(ctx, fn), "first call after Reset; want a run despite the backoff")
	assert.Equal(t, int64(2), runs.Load(), "runs: got %d; want 2", runs.Load())
	assert.True(t, e.Ready(), "Ready() = false; want true")
}

// wantWaits returns the n waits expected after n consecutive failures:
// minB doubled each time, capped at maxB, computed without overflow.
func wantWaits(minB, maxB time.Duration, n int) []time.Duration {
	waits := make([]time.Duration, n)
	w := minB
	for i := range waits {
		waits[i] = min(w, maxB)
		if w <= maxB/2 {
			w *= 2
		} else {
			w = maxB
		}
	}
	return waits
}

func TestEnsureBackoffDoublesAndCaps(t *testing.T) {
	tests := []struct {
		name       string
		minBackoff time.Duration
		maxBackoff time.Duration
		want       []time.Duration
	}{
		{
			name:       "1s to 4s",
			minBackoff: time.Second,
			maxBackoff: 4 * time.Second,
			want:       []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second},
		},
		{
			name: "zero means defaults",
			want: []time.Duration{
				100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
				800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond,
				6400 * time.Millisecond, DefaultMaxBackoff, DefaultMaxBackoff,
			},
		},
		{
			name:       "min above max",
			minBackoff: time.Hour,
			maxBackoff: time.Minute,
			want:       []time.Duration{time.Minute, time.Minute, time.Minute},
		},
		{
			// min<<26 overflows int64; from failure 28 on the wrapped
			// value is positive (1h44m, 3h28m, ...) and must not slip
			// under the cap.
			name:       "stays capped when doubling overflows",
			minBackoff: 2*time.Minute + 17439*time.Millisecond,
			maxBackoff: 24 * time.Hour,
			want:       wantWaits(2*time.Minute+17439*time.Millisecond, 24*time.Hour, 40),
		},
		{
			// The doubling must not stop at min<<30 below the cap.
			name:       "max near the top of int64",
			minBackoff: 5 * time.Second,
			maxBackoff: 1<<63 - 1,
			want:       wantWaits(5*time.Second, 1<<63-1, 40),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testutil.NewClock()
			e := Ensurer{MinBackoff: tt.minBackoff, MaxBackoff: tt.maxBackoff, Now: clock.Now}
			cause := errors.New("boom")
			var runs atomic.Int64
			var result atomic.Pointer[error]
			result.Store(&cause)
			fn := countingFn(&runs, &result)
			ctx := context.Background()

			for i, want := range tt.want {
				require.ErrorIs(t, e.Ensure(ctx, fn), cause, "failure %d: want a run", i+1)
				require.Equal(t, int64(i+1), runs.Load(), "failure %d: runs got %d; want %d", i+1, runs.Load(), i+1)

				clock.Advance(want - time.Nanosecond)
				err := e.Ensure(ctx, fn)
				require.ErrorIs(t, err, ErrBackoff, "after failure %d, 1ns before the wait %v", i+1, want)
				require.Equal(t, int64(i+1), runs.Load(), "after failure %d, 1ns before the wait %v: fn ran", i+1, want)

				clock.Advance(time.Nanosecond) // now exactly at retryAt
			}
		})
	}
}

func TestEnsurePanicBecomesError(t *testing.T) {
	const waiters = 8
	synctest.Test(t, func(t *testing.T) {
		clock := testutil.NewClock()
		e := Ensurer{MinBackoff: time.Second, Now: clock.Now}
		var runs atomic.Int64
		var panics atomic.Bool
		panics.Store(true)
		release := make(chan struct{})
		fn := func(context.Context) error {
			runs.Add(1)
			<-release
			if panics.Load() {
				panic("kaboom")
			}
			return nil
		}
		ctx := context.Background()

		errs := ensureAsync(&e, ctx, fn, waiters)
		synctest.Wait()
		close(release)
		for i := range waiters {
			err := recvErr(t, errs)
			require.Error(t, err, "waiter %d", i)
			assert.ErrorContains(t, err, "panic", "waiter %d", i)
			assert.ErrorContains(t, err, "kaboom", "waiter %d", i)
		}
		require.Equal(t, int64(1), runs.Load(), "runs: got %d; want 1", runs.Load())
		require.False(t, e.Ready(), "Ready() after a panic = true; want false")

		// It counts as a failure: backoff applies.
		err := e.Ensure(ctx, fn)
		require.ErrorIs(t, err, ErrBackoff)
		assert.ErrorContains(t, err, "kaboom")
		require.Equal(t, int64(1), runs.Load(), "runs during backoff: got %d; want 1", runs.Load())

		panics.Store(false)
		clock.Advance(time.Second)
		require.NoError(t, e.Ensure(ctx, fn))
		assert.True(t, e.Ready(), "Ready() = false; want true")
		assert.Equal(t, int64(2), runs.Load(), "runs: got %d; want 2", runs.Load())
	})
}

// Between a caller's backoff check and its joining a run, another run may
// finish; the run the caller then starts must re-check, not run fn. Both
// windows are opened from inside the caller's check, through Now.
func TestEnsureRunRechecksState(t *testing.T) {
	cause := errors.New("boom")
	failOnce := func(t *testing.T, e *Ensurer, runs *atomic.Int64) {
		t.Helper()
		err := e.Ensure(context.Background(), func(context.Context) error { runs.Add(1); return cause })
		require.ErrorIs(t, err, cause)
	}
	fn := func(runs *atomic.Int64) func(context.Context) error {
		return func(context.Context) error { runs.Add(1); return nil }
	}

	t.Run("a run succeeded", func(t *testing.T) {
		clock := testutil.NewClock()
		var inCheck atomic.Pointer[func()]
		e := Ensurer{Now: func() time.Time {
			if h := inCheck.Swap(nil); h != nil {
				(*h)()
			}
			return clock.Now()
		}}
		var runs atomic.Int64
		failOnce(t, &e, &runs)
		clock.Advance(time.Hour) // the backoff has expired: the check passes
		markReady := e.MarkReady // as if another caller's run succeeded now
		inCheck.Store(&markReady)

		require.NoError(t, e.Ensure(context.Background(), fn(&runs)))
		require.Nil(t, inCheck.Load(), "the hook did not fire; the test did not open the window")
		assert.Equal(t, int64(1), runs.Load(), "runs: got %d; want 1 (ready was set before the run started)", runs.Load())
	})

	t.Run("a run failed", func(t *testing.T) {
		clock := testutil.NewClock()
		var lateOnce atomic.Pointer[time.Time]
		e := Ensurer{MinBackoff: time.Second, Now: func() time.Time {
			if late := lateOnce.Swap(nil); late != nil {
				return *late
			}
			return clock.Now()
		}}
		var runs atomic.Int64
		failOnce(t, &e, &runs)
		// The caller's check reads a time past retryAt and passes; the
		// run's re-check reads the clock, inside the backoff, as if the
		// failure were recorded between the two.
		late := clock.Now().Add(time.Second)
		lateOnce.Store(&late)

		err := e.Ensure(context.Background(), fn(&runs))
		require.Nil(t, lateOnce.Load(), "the late reading was not used; the test did not open the window")
		assert.ErrorIs(t, err, ErrBackoff)
		assert.ErrorIs(t, err, cause)
		assert.Equal(t, int64(1), runs.Load(), "runs: got %d; want 1 (the backoff started before the run)", runs.Load())
	})
}

func TestEnsureHitAllocs(t *testing.T) {
	var e Ensurer
	var runs atomic.Int64
	fn := func(context.Context) error { runs.Add(1); return nil }
	ctx := context.Background()
	require.NoError(t, e.Ensure(ctx, fn))
	require.True(t, e.Ready(), "Ready() = false; want true")

	var err error
	allocs := testing.AllocsPerRun(1000, func() { err = e.Ensure(ctx, fn) })
	require.NoError(t, err)
	assert.Zero(t, allocs, "allocs per hit: got %v; want 0", allocs)
	assert.Equal(t, int64(1), runs.Load(), "runs: got %d; want 1", runs.Load())
}
