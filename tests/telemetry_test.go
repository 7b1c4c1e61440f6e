package tests

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// secretContent is message content no log line may hold unless the
// application opts in.
const secretContent = "my card number is 4111-secret"

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// observed is a memory over a DataFlowBackend whose every layer records
// to in-memory telemetry.
type observed struct {
	mem    *memory.PersistentBufferMemory
	db     *dataflow.DB
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	logs   *syncBuffer
}

func newObserved(t *testing.T, url string, opts ...memory.Option) *observed {
	t.Helper()
	o := &observed{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader(), logs: new(syncBuffer)}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	logger := slog.New(slog.NewTextHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err := dataflow.Open(context.Background(), url,
		dataflow.WithTracerProvider(tp), dataflow.WithMeterProvider(mp), dataflow.WithLogger(logger))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	b, err := backend.NewDataFlowBackend(db, backend.WithLogger(logger))
	require.NoError(t, err)
	m, err := memory.NewPersistentBufferMemory(b, append([]memory.Option{
		memory.WithTracerProvider(tp), memory.WithMeterProvider(mp), memory.WithLogger(logger),
		memory.WithSummarizer(lengthSummarizer{}, 100)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	o.mem, o.db = m, b.DB()
	return o
}

// lengthSummarizer summarizes turns by their count: it lets Summarize run
// without a model, and writes no content anywhere.
type lengthSummarizer struct{}

func (lengthSummarizer) Summarize(_ context.Context, req memory.SummaryRequest) (string, error) {
	return fmt.Sprintf("%d turns", len(req.Turns)), nil
}

// runOperations runs every operation of the memory once at least.
func runOperations(t *testing.T, m *memory.PersistentBufferMemory) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s1", User: "ada", Title: "t"}))
	require.NoError(t, m.SaveTurn(ctx, "s1", memory.Turn{ID: "t1", Messages: []memory.Message{
		{Role: memory.RoleUser, Content: secretContent, Metadata: map[string]any{"secret-meta": "hidden"}}}}))
	require.NoError(t, m.AppendMessages(ctx, "s1", "t1", memory.Message{Role: memory.RoleAssistant, Content: "noted"}))
	_, err := m.LoadContext(ctx, "s1") // hit: the writes kept the window
	require.NoError(t, err)
	m.InvalidateCache("s1")
	_, err = m.LoadContext(ctx, "s1") // miss
	require.NoError(t, err)
	_, err = m.SessionInfo(ctx, "s1")
	require.NoError(t, err)
	_, err = m.ListSessions(ctx, memory.SessionQuery{})
	require.NoError(t, err)
	_, err = m.Search(ctx, memory.SearchQuery{Text: "noted"})
	require.NoError(t, err)
	_, err = m.History(ctx, "s1", memory.HistoryQuery{})
	require.NoError(t, err)
	var export bytes.Buffer
	require.NoError(t, m.Export(ctx, "s1", &export))
	_, err = m.ForTenant("copy").Import(ctx, &export)
	require.NoError(t, err)
	require.NoError(t, m.ClaimSession(ctx, "s1", "ada"))
	require.NoError(t, m.Fork(ctx, "s1", "t1", "s1-fork"))
	_, err = m.ListForks(ctx, "s1")
	require.NoError(t, err)
	require.NoError(t, m.ReplaceSession(ctx, "s3", memory.Turn{User: "replaced"}))
	_, err = m.Summarize(ctx, "s1")
	require.NoError(t, err)
	_, err = m.Expire(ctx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	_, err = m.DeleteUser(ctx, "ada")
	require.NoError(t, err)
	require.NoError(t, m.Clear(ctx, "s2"))
}

func spanNamed(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attrOf(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// metricsByName collects the reader's metrics.
func metricsByName(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if prev, ok := out[m.Name]; ok && m.Name == memory.MetricOperationDuration {
				// memory's and dataflow's: keep both data points
				h := prev.Data.(metricdata.Histogram[float64])
				h.DataPoints = append(h.DataPoints, m.Data.(metricdata.Histogram[float64]).DataPoints...)
				prev.Data = h
				out[m.Name] = prev
				continue
			}
			out[m.Name] = m
		}
	}
	return out
}

func sumOf(t *testing.T, m metricdata.Metrics) int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	require.Truef(t, ok, "%s: got %T; want an int64 sum", m.Name, m.Data)
	var total int64
	for _, dp := range s.DataPoints {
		total += dp.Value
	}
	return total
}

// Every operation records a span, children of which are the statements it
// ran; the ensure runs record spans of their own; on both dialects.
func TestTelemetrySpans(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		o := newObserved(t, d.URL(t))
		runOperations(t, o.mem)
		spans := o.spans.Ended()

		for _, name := range []string{"SaveTurn", "AppendMessages", "LoadContext", "Clear", "CreateSession", "SessionInfo",
			"ListSessions", "DeleteUser", "Expire", "Search", "History", "Export", "Import"} {
			assert.NotEmptyf(t, spanNamed(spans, memory.SpanPrefix+name), "span %s", memory.SpanPrefix+name)
		}
		// LoadContext says whether the cache answered.
		var hits, misses int
		for _, s := range spanNamed(spans, memory.SpanPrefix+"LoadContext") {
			v, ok := attrOf(s, memory.AttrCacheHit)
			require.True(t, ok, "LoadContext span without %s", memory.AttrCacheHit)
			if v.AsBool() {
				hits++
			} else {
				misses++
			}
			sid, _ := attrOf(s, memory.AttrSession)
			assert.Equal(t, "s1", sid.AsString())
		}
		assert.Equal(t, 1, hits, "LoadContext spans that hit")
		assert.Equal(t, 1, misses, "LoadContext spans that missed")

		// The statements of SaveTurn are its children.
		save := spanNamed(spans, memory.SpanPrefix+"SaveTurn")[0]
		var children []sdktrace.ReadOnlySpan
		for _, s := range spanNamed(spans, dataflow.SpanStatement) {
			if s.Parent().SpanID() == save.SpanContext().SpanID() {
				children = append(children, s)
			}
		}
		require.NotEmpty(t, children, "statement spans under SaveTurn")
		system, _ := attrOf(children[0], "db.system.name")
		assert.Equal(t, map[string]string{"sqlite": "sqlite", "pg": "postgresql", "mysql": "mysql"}[d.Name], system.AsString())
		text, _ := attrOf(children[0], "db.query.text")
		assert.NotContains(t, text.AsString(), secretContent, "a statement span holds no value")
		for _, s := range spanNamed(spans, dataflow.SpanStatement) {
			text, _ := attrOf(s, "db.query.text")
			assert.NotContains(t, text.AsString(), secretContent)
		}

		// The tables were ensured on first use, under an operation's span.
		ensures := spanNamed(spans, dataflow.SpanEnsure)
		require.NotEmpty(t, ensures)
		tables := map[string]bool{}
		for _, s := range ensures {
			v, _ := attrOf(s, dataflow.AttrTable)
			tables[v.AsString()] = true
			assert.True(t, s.Parent().IsValid(), "an ensure run is a child of the operation that needed it")
		}
		assert.True(t, tables[backend.SessionsTable] && tables[backend.MessagesTable], "ensured tables: %v", tables)
	})
}

// The latency histogram, the cache counters and the engine's counters
// are recorded, beside Stats and Figures.
func TestTelemetryMetrics(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		o := newObserved(t, d.URL(t))
		runOperations(t, o.mem)
		got := metricsByName(t, o.reader)

		h, ok := got[memory.MetricOperationDuration].Data.(metricdata.Histogram[float64])
		require.True(t, ok, "histogram %s", memory.MetricOperationDuration)
		ops := map[string]uint64{}
		for _, dp := range h.DataPoints {
			op, _ := dp.Attributes.Value(memory.AttrOperation)
			outcome, _ := dp.Attributes.Value(memory.AttrOutcome)
			assert.Equal(t, "ok", outcome.AsString(), "operation %s", op.AsString())
			ops[op.AsString()] += dp.Count
		}
		assert.EqualValues(t, 2, ops["LoadContext"])
		assert.EqualValues(t, 1, ops["SaveTurn"])
		assert.NotZero(t, ops["ensure"], "ensure runs timed")

		stats := o.mem.Stats()
		assert.EqualValues(t, stats.Hits, sumOf(t, got[memory.MetricCacheHits]))
		assert.EqualValues(t, stats.Misses, sumOf(t, got[memory.MetricCacheMisses]))
		assert.EqualValues(t, stats.Invalidations, sumOf(t, got[memory.MetricCacheInvalidations]))
		assert.NotZero(t, stats.Invalidations)
		for _, name := range []string{memory.MetricCacheStale, memory.MetricCacheEvictions, dataflow.MetricEnsureFailures, dataflow.MetricRetries} {
			assert.Containsf(t, got, name, "metric %s", name)
		}
		engine := o.db.Stats()
		assert.EqualValues(t, engine.EnsureRuns, sumOf(t, got[dataflow.MetricEnsureRuns]))
		assert.EqualValues(t, engine.MigrationsApplied, sumOf(t, got[dataflow.MetricEnsureMigrations]))
		assert.NotZero(t, engine.MigrationsApplied)

		f := o.mem.Figures()
		assert.Equal(t, stats, f.Cache)
		assert.Equal(t, engine.EnsureRuns, f.Engine["ensure_runs"])
		assert.Equal(t, engine.MigrationsApplied, f.Engine["migrations_applied"])
	})
}

// Ensure runs and slow operations are logged; content is not, unless the
// application opts in.
func TestTelemetryLogging(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		t.Run("default", func(t *testing.T) {
			o := newObserved(t, d.URL(t))
			runOperations(t, o.mem)
			logs := o.logs.String()
			assert.Contains(t, logs, `level=INFO msg="turnkeep: table ensured" table=`+backend.SessionsTable+" migrated=true")
			assert.Contains(t, logs, `level=DEBUG msg="turnkeep: turn saved" session=s1 turn=t1 messages=1`)
			assert.Contains(t, logs, `level=INFO msg="turnkeep: sessions deleted" op="delete user"`)
			assert.NotContains(t, logs, "slow", "no threshold, no slow operation")
			assert.NotContains(t, logs, secretContent, "content logged without WithLogContent")
			assert.NotContains(t, logs, "secret-meta", "metadata logged without WithLogContent")
		})
		t.Run("content", func(t *testing.T) {
			o := newObserved(t, d.URL(t), memory.WithLogContent(true))
			runOperations(t, o.mem)
			logs := o.logs.String()
			assert.Contains(t, logs, secretContent)
			assert.Contains(t, logs, "secret-meta")
		})
		t.Run("slow", func(t *testing.T) {
			o := newObserved(t, d.URL(t), memory.WithSlowThreshold(time.Nanosecond))
			runOperations(t, o.mem)
			logs := o.logs.String()
			assert.Regexp(t, `level=WARN msg="turnkeep: slow operation" op=SaveTurn duration=\S+ threshold=1ns session=s1`, logs)
			assert.NotContains(t, logs, secretContent)
		})
		t.Run("slow statements", func(t *testing.T) {
			var logs syncBuffer
			db, err := dataflow.Open(context.Background(), d.URL(t),
				dataflow.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), dataflow.WithSlowThreshold(time.Nanosecond))
			require.NoError(t, err)
			defer db.Close()
			b, err := backend.NewDataFlowBackend(db)
			require.NoError(t, err)
			m, err := memory.NewPersistentBufferMemory(b)
			require.NoError(t, err)
			require.NoError(t, m.SaveTurn(context.Background(), "s", memory.Turn{User: secretContent}))
			assert.Contains(t, logs.String(), `level=WARN msg="turnkeep: slow statement" statement=`)
			assert.NotContains(t, logs.String(), secretContent, "a statement is logged without its values")
		})
	})
}

// With no provider configured (otel's default globals) or no-op ones, a
// cache hit under WithStaleReads allocates what it did before telemetry
// (maxHitAllocs), and so does SaveTurn.
func TestTelemetryNoProviderAllocations(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		opts []memory.Option
	}{
		{"none", nil},
		{"discard logger, slow threshold off", []memory.Option{memory.WithLogger(slog.New(slog.DiscardHandler))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, _ := openTurnkeep(t, dbtest.SQLiteURL(t), nil, append([]memory.Option{memory.WithStaleReads(time.Hour)}, c.opts...)...)
			require.NoError(t, m.SaveTurn(ctx, "s", benchTurn))
			_, err := m.LoadContext(ctx, "s")
			require.NoError(t, err)
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := m.LoadContext(ctx, "s"); err != nil {
					t.Error(err)
				}
			})
			assert.Equalf(t, float64(maxHitAllocs), allocs, "allocations per cache hit: got %v; want %d", allocs, maxHitAllocs)
		})
	}
}
