package memory_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/memory"
)

func fill(b *testing.B, m memory.Memory, sessionID string, n int) {
	b.Helper()
	for i := range n {
		if err := m.SaveTurn(context.Background(), sessionID, memory.Turn{User: fmt.Sprint("question ", i), Agent: "answer", Metadata: map[string]any{"i": i}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadContext compares a cache hit with a read-through of the
// in-memory backend (the cheapest backend there is).
func BenchmarkLoadContext(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		ttl  []memory.Option
	}{
		{"cache-hit", nil},
		{"read-through", []memory.Option{memory.WithCacheTTL(0)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), bc.ttl...)
			if err != nil {
				b.Fatal(err)
			}
			fill(b, m, "s", 2*memory.DefaultMaxTurns)
			if _, err := m.LoadContext(ctx, "s"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				w, err := m.LoadContext(ctx, "s")
				if err != nil || len(w.Turns) != memory.DefaultMaxTurns {
					b.Fatal(err, len(w.Turns))
				}
			}
		})
	}
	b.Run("cache-hit-parallel", func(b *testing.B) {
		m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend())
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, 64)
		for i := range ids {
			ids[i] = fmt.Sprint("session-", i)
			fill(b, m, ids[i], memory.DefaultMaxTurns)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := m.LoadContext(ctx, ids[i%len(ids)]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

func BenchmarkSaveTurn(b *testing.B) {
	ctx := context.Background()
	turn := memory.Turn{User: "what is the weather like?", Agent: "sunny", Metadata: map[string]any{"model": "x", "tokens": 42}}
	b.Run("buffer", func(b *testing.B) {
		m := memory.NewBufferMemory()
		b.ReportAllocs()
		for b.Loop() {
			if err := m.SaveTurn(ctx, "s", turn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("buffer-no-metadata", func(b *testing.B) {
		m := memory.NewBufferMemory()
		t := turn
		t.Metadata = nil
		b.ReportAllocs()
		for b.Loop() {
			if err := m.SaveTurn(ctx, "s", t); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("persistent-cached", func(b *testing.B) {
		m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.LoadContext(ctx, "s"); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := m.SaveTurn(ctx, "s", turn); err != nil {
				b.Fatal(err)
			}
		}
	})
}
