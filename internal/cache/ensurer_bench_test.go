package cache

import (
	"context"
	"sync/atomic"
	"testing"
)

// The hit path of a ready Ensurer should cost about one atomic load. Read
// BenchmarkEnsureHit against BenchmarkAtomicLoad, and the Parallel pair
// against each other, from one run.

var benchSink bool

// readyEnsurer returns an Ensurer that has succeeded once and the fn it ran;
// the benchmark fails if fn runs again.
func readyEnsurer(b *testing.B) (*Ensurer, func(context.Context) error, *atomic.Int64) {
	b.Helper()
	e := new(Ensurer)
	runs := new(atomic.Int64)
	fn := func(context.Context) error { runs.Add(1); return nil }
	if err := e.Ensure(context.Background(), fn); err != nil {
		b.Fatalf("first Ensure: got %v; want nil", err)
	}
	return e, fn, runs
}

func checkNoRuns(b *testing.B, runs *atomic.Int64) {
	b.Helper()
	if got := runs.Load(); got != 1 {
		b.Fatalf("fn runs: got %d; want 1 (the hit path ran fn)", got)
	}
}

func BenchmarkEnsureHit(b *testing.B) {
	e, fn, runs := readyEnsurer(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Ensure(ctx, fn); err != nil {
			b.Fatal(err)
		}
	}
	checkNoRuns(b, runs)
}

func BenchmarkEnsureHitParallel(b *testing.B) {
	e, fn, runs := readyEnsurer(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := e.Ensure(ctx, fn); err != nil {
				b.Error(err)
				return
			}
		}
	})
	checkNoRuns(b, runs)
}

// BenchmarkAtomicLoad is the baseline: a bare atomic.Bool load, the floor
// the hit path can reach.
func BenchmarkAtomicLoad(b *testing.B) {
	var ready atomic.Bool
	ready.Store(true)
	b.ReportAllocs()
	var ok bool
	for b.Loop() {
		ok = ready.Load()
	}
	benchSink = ok
}

func BenchmarkAtomicLoadParallel(b *testing.B) {
	var ready atomic.Bool
	ready.Store(true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ok := true
		for pb.Next() {
			ok = ok && ready.Load()
		}
		if !ok {
			b.Error("atomic load: got false; want true")
		}
	})
}
