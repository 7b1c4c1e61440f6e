package mcp_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	sdkmcp "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	tkmcp "github.com/turnkeep/turnkeep/contrib/mcp"
	"github.com/turnkeep/turnkeep/memory"
)

// speedRig is a server over OS pipes, framed as stdio is, with a no-op
// tool beside the memory's, and the memory it serves.
type speedRig struct {
	m  *memory.PersistentBufferMemory
	cs *sdkmcp.ClientSession
}

func newSpeedRig(t testing.TB) *speedRig {
	ctx := context.Background()
	m := openSQLite(t)
	// A year of one user's chats: 100 sessions of 100 turns, a tenth of
	// them about the orchard. Each session is stored in one transaction.
	for s := range 100 {
		id := fmt.Sprintf("s%d", s)
		require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: id, User: "ada", Title: "chat " + id}))
		turns := make([]memory.Turn, 100)
		for i := range turns {
			text := fmt.Sprintf("turn %d of session %d about the weather and the garden", i, s)
			if i%10 == 0 {
				text += " and the orchard of plum trees"
			}
			turns[i] = memory.Turn{User: text, Agent: "noted"}
		}
		require.NoError(t, m.ReplaceSession(ctx, id, turns...))
	}
	srv, err := tkmcp.NewServer(m, tkmcp.Scope{User: "ada"})
	require.NoError(t, err)
	sdkmcp.AddTool(srv, &sdkmcp.Tool{Name: "noop", Description: "does nothing"},
		func(context.Context, *sdkmcp.CallToolRequest, struct{}) (*sdkmcp.CallToolResult, any, error) {
			return &sdkmcp.CallToolResult{Content: []sdkmcp.Content{&sdkmcp.TextContent{Text: "{}"}}}, nil, nil
		})
	toServer, fromClient, err := os.Pipe()
	require.NoError(t, err)
	toClient, fromServer, err := os.Pipe()
	require.NoError(t, err)
	ss, err := srv.Connect(ctx, &sdkmcp.IOTransport{Reader: toServer, Writer: fromServer}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { ss.Close() })
	cs, err := sdkmcp.NewClient(&sdkmcp.Implementation{Name: "speed", Version: "v0"}, nil).
		Connect(ctx, &sdkmcp.IOTransport{Reader: toClient, Writer: fromClient}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { cs.Close() })
	return &speedRig{m: m, cs: cs}
}

// callSearch times one search_memory call.
func (r *speedRig) callSearch(t testing.TB) time.Duration {
	q := map[string]any{"query": "plum orchard", "limit": 20}
	start := time.Now()
	res, err := r.cs.CallTool(context.Background(), &sdkmcp.CallToolParams{Name: "search_memory", Arguments: q})
	d := time.Since(start)
	require.NoError(t, err)
	require.False(t, res.IsError)
	return d
}

// baseline times one direct Search with the same query and one no-op
// call.
func (r *speedRig) baseline(t testing.TB) (direct, noop time.Duration) {
	ctx := context.Background()
	start := time.Now()
	hits, err := r.m.Search(ctx, memory.SearchQuery{Text: "plum orchard", User: "ada", Limit: 20})
	direct = time.Since(start)
	require.NoError(t, err)
	require.Len(t, hits, 20)

	start = time.Now()
	res, err := r.cs.CallTool(ctx, &sdkmcp.CallToolParams{Name: "noop", Arguments: map[string]any{}})
	noop = time.Since(start)
	require.NoError(t, err)
	require.False(t, res.IsError)
	return direct, noop
}

// BenchmarkSearchMemoryOverhead measures a search_memory call over a
// stdio-framed pipe against a direct Search plus a no-op tool call over
// the same connection, in one run, in blocks that alternate, and reports
// the ratio (the bar: at most 1.2x). The cost is the process's
// CPU time (user and system, every thread: the client's side, the
// server's and the database's): on a machine shared with other work,
// wall time measures mostly how long a parked thread waits to be woken,
// which grows with the load, not with the work. The wall medians are
// reported beside it.
//
//	cd contrib/mcp && go test -run '^$' -bench SearchMemoryOverhead -benchtime 1x
func BenchmarkSearchMemoryOverhead(b *testing.B) {
	r := newSpeedRig(b)
	for range 20 { // warm the statement cache and the schema caches
		r.callSearch(b)
		r.baseline(b)
	}
	const blocks, per = 10, 10
	var toolCPU, baseCPU time.Duration
	var tools, directs, noops []time.Duration
	b.ResetTimer()
	for b.Loop() {
		for blk := range blocks {
			for side := range 2 {
				start := cpuTime(b)
				for range per {
					if (blk+side)%2 == 0 {
						tools = append(tools, r.callSearch(b))
					} else {
						d, n := r.baseline(b)
						directs, noops = append(directs, d), append(noops, n)
					}
				}
				if (blk+side)%2 == 0 {
					toolCPU += cpuTime(b) - start
				} else {
					baseCPU += cpuTime(b) - start
				}
			}
		}
	}
	b.ReportMetric(float64(toolCPU)/float64(baseCPU), "cpu-ratio")
	b.ReportMetric(float64(median(tools))/float64(median(directs)+median(noops)), "wall-ratio")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func BenchmarkSearchMemory(b *testing.B) {
	r := newSpeedRig(b)
	b.Run("search_memory", func(b *testing.B) {
		for b.Loop() {
			r.callSearch(b)
		}
	})
	b.Run("Search+noop", func(b *testing.B) {
		for b.Loop() {
			r.baseline(b)
		}
	})
}
