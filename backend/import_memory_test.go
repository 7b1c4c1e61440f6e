package backend

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// EnvScale turns on the tests that move hundreds of megabytes.
const envScale = "TURNKEEP_SCALE"

// heapMetric is what "the Go heap" means here: the bytes of heap objects,
// live or not yet swept, sampled while an import runs. Its peak is what
// the process holds at worst, garbage included.
const heapMetric = "/memory/classes/heap/objects:bytes"

// liveMetric is the heap marked live by the last collection: what the
// import holds, garbage excluded.
const liveMetric = "/gc/heap/live:bytes"

// writeImportFile writes an import of one session, about size bytes: turns
// of a user and an assistant message of about 4 KiB of words each.
func writeImportFile(t *testing.T, size int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("import-%d.jsonl", size))
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	w := bufio.NewWriter(f)
	rnd := rand.New(rand.NewPCG(1, 2))
	word := func() string {
		b := make([]byte, 16+rnd.IntN(32)) // long words: the test is of bytes, not of the search index
		for i := range b {
			b[i] = byte('a' + rnd.IntN(26))
		}
		return string(b)
	}
	vocab := make([]string, 5000)
	for i := range vocab {
		vocab[i] = word()
	}
	text := func() string {
		var sb strings.Builder
		for sb.Len() < 4000 {
			sb.WriteString(vocab[rnd.IntN(len(vocab))])
			sb.WriteByte(' ')
		}
		return sb.String()
	}
	n, _ := w.WriteString(importHead("big", "ada") + "\n")
	for i := 0; n < size; i++ {
		k, err := w.WriteString(importTurn(fmt.Sprintf("t%d", i), fmt.Sprintf("u%d=%s", i, text()), fmt.Sprintf("a%d=%s", i, text())) + "\n")
		require.NoError(t, err)
		n += k
	}
	require.NoError(t, w.Flush())
	return path
}

// importPeak imports the file at path into m and returns the peaks of
// heapMetric and liveMetric while it ran, and how many turns the session
// then holds.
func importPeak(t *testing.T, m *memory.PersistentBufferMemory, path string) (uint64, uint64, int) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	runtime.GC()
	var (
		peak, live uint64
		wg         sync.WaitGroup
		stop       = make(chan struct{})
	)
	sample := []metrics.Sample{{Name: heapMetric}, {Name: liveMetric}}
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			live = max(live, sample[1].Value.Uint64())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	info, err := m.Import(context.Background(), f)
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	return peak, live, info.TurnCount
}

// Import's memory does not grow with the file: the peak live Go heap of
// an import four times larger is within 1.2x. The sizes are 1 and 4 MB,
// or 20 and 200 MB with TURNKEEP_SCALE=1 (the figures; too slow
// under -race). The smaller import is long enough for dozens of
// collections, so that both peaks are the heap's steady state.
//
// The bound is on the live heap (what the last collection marked), not on
// the heap with its garbage: how much garbage a sample sees depends on
// where the collector stood, and a longer import samples more cycles, so
// that figure drifted up by up to 1.6 MB between 1 and 4 MB under -race
// while the live heap stayed within 0.6 MB (3.7 -> 5.6 MB against 2.7 ->
// 3.2 MB in a CI run). Without -race, 1 to 16 MB: live 2.0-2.7 MB,
// with garbage 3.0-4.9 MB. At the default sizes the heap is a few MB, so
// the process's other goroutines (the package's other tests' databases
// winding down) move it by up to a MB: the bound there is 1.2x plus
// 1 MiB, which an import that holds the file (4 MB more of it, and its
// decoded turns) still fails. The sizes are held to 1.2x exactly.
// importRuns is how many times TestImportMemoryBounded imports each file.
const importRuns = 3

func TestImportMemoryBounded(t *testing.T) {
	small, large := 1<<20, 4<<20
	slack := float64(1 << 20)
	if os.Getenv(envScale) != "" {
		small, large = 20<<20, 200<<20
		slack = 0
	}
	smallFile, largeFile := writeImportFile(t, small), writeImportFile(t, large)
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		// Each size is imported importRuns times, each into a database of
		// its own, and its least peak kept: the other goroutines of the
		// process (and the race detector's) only add to a peak, so the
		// least is the import's own.
		var lives [2]uint64
		for i, path := range []string{smallFile, largeFile} {
			for run := range importRuns {
				// Opened without a query hook: the tests' recorder keeps
				// every statement.
				db, err := dataflow.Open(context.Background(), d.URL(t))
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, db.Close()) })
				b, err := NewDataFlowBackend(db)
				require.NoError(t, err)
				m := newMemory(t, b)
				start := time.Now()
				peak, live, turns := importPeak(t, m, path)
				fi, err := os.Stat(path)
				require.NoError(t, err)
				t.Logf("%s: %d MB, %d turns: peak heap %.1f MB, peak live heap %.1f MB, %v", d.Name, fi.Size()>>20, turns, float64(peak)/(1<<20), float64(live)/(1<<20), time.Since(start).Round(time.Millisecond))
				require.Greater(t, turns, 100)
				if run == 0 || live < lives[i] {
					lives[i] = live
				}
			}
		}
		require.LessOrEqual(t, float64(lives[1]), 1.2*float64(lives[0])+slack,
			"peak live heap %d B importing %d MB; want within 1.2x (+%.0f B) of %d B importing %d MB", lives[1], large>>20, slack, lives[0], small>>20)
	})
}
