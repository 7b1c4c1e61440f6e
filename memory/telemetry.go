package memory

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/otelx"
)

// Names of the telemetry a PersistentBufferMemory emits: its
// instrumentation scope, span names (SpanPrefix + the method's name, as
// SaveTurn, LoadContext, AppendMessages, Clear, CreateSession,
// SessionInfo, ListSessions, DeleteUser, Expire, Search, History, Export,
// Import), metrics and attributes. The README lists them all.
const (
	InstrumentationName = "github.com/turnkeep/turnkeep/memory"
	SpanPrefix          = "turnkeep."

	// MetricOperationDuration is a histogram of each operation's latency
	// in seconds, with the attributes AttrOperation and AttrOutcome.
	MetricOperationDuration = "turnkeep.operation.duration"
	// Counters of the window cache, as Stats reports them.
	MetricCacheHits          = "turnkeep.cache.hits"
	MetricCacheMisses        = "turnkeep.cache.misses"
	MetricCacheStale         = "turnkeep.cache.stale"
	MetricCacheEvictions     = "turnkeep.cache.evictions"
	MetricCacheInvalidations = "turnkeep.cache.invalidations"

	AttrOperation = "turnkeep.operation"  // the operation: its span name without SpanPrefix
	AttrOutcome   = "turnkeep.outcome"    // "ok" or "error"
	AttrSession   = "turnkeep.session.id" // the session ID (not its content)
	AttrTenant    = "turnkeep.tenant"     // the tenant, when not the default ""
	AttrCacheHit  = "turnkeep.cache.hit"  // LoadContext: whether the cache answered
)

// op is an operation that telemetry names.
type op uint8

const (
	opSaveTurn op = iota
	opAppendMessages
	opLoadContext
	opClear
	opCreateSession
	opSessionInfo
	opListSessions
	opDeleteUser
	opExpire
	opSearch
	opHistory
	opExport
	opImport
	opClaimSession
	numOps
)

var opNames = [numOps]string{
	"SaveTurn", "AppendMessages", "LoadContext", "Clear", "CreateSession", "SessionInfo",
	"ListSessions", "DeleteUser", "Expire", "Search", "History", "Export", "Import",
	"ClaimSession",
}

// telemetry is what a memory records of its operations beyond its
// counters. A memory with nothing to record has none, so that its
// operations pay one nil check for it.
type telemetry struct {
	tracer    trace.Tracer            // nil: no spans
	spanNames [numOps]string          // SpanPrefix + name
	duration  metric.Float64Histogram // nil: no latency histogram
	record    [numOps][2][]metric.RecordOption
	reg       metric.Registration // the cache counters' callback; nil if none
	log       *slog.Logger        // nil: discard
	slow      time.Duration       // WithSlowThreshold; 0: off
}

// newTelemetry returns the telemetry of c, or nil when there is nothing to
// record. Providers not given are otel's global ones at this moment; while
// those are still otel's defaults (no-ops), nothing is recorded.
func newTelemetry(c config, stats func() CacheStats) (*telemetry, error) {
	t := &telemetry{log: c.logger, slow: c.slowThreshold}
	if tp := otelx.TracerProvider(c.tracerProvider); tp != nil {
		t.tracer = tp.Tracer(InstrumentationName)
		for i := range opNames {
			t.spanNames[i] = SpanPrefix + opNames[i]
		}
	}
	if mp := otelx.MeterProvider(c.meterProvider); mp != nil {
		if err := t.instruments(mp.Meter(InstrumentationName), stats); err != nil {
			return nil, err
		}
	}
	if t.tracer == nil && t.duration == nil && t.slow == 0 {
		return nil, nil
	}
	return t, nil
}

func (t *telemetry) instruments(m metric.Meter, stats func() CacheStats) error {
	var err error
	t.duration, err = m.Float64Histogram(MetricOperationDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Latency of turnkeep operations."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err != nil {
		return err
	}
	for i, name := range opNames {
		for j, outcome := range [2]string{"ok", "error"} {
			set := attribute.NewSet(attribute.String(AttrOperation, name), attribute.String(AttrOutcome, outcome))
			t.record[i][j] = []metric.RecordOption{metric.WithAttributeSet(set)}
		}
	}
	counter := func(name, desc string) (metric.Int64ObservableCounter, error) {
		return m.Int64ObservableCounter(name, metric.WithUnit("{window}"), metric.WithDescription(desc))
	}
	var cs [5]metric.Int64ObservableCounter
	for i, d := range [5][2]string{
		{MetricCacheHits, "Loads answered from a cached window."},
		{MetricCacheMisses, "Loads that read the window whole."},
		{MetricCacheStale, "Cached windows found changed by another writer."},
		{MetricCacheEvictions, "Cached windows evicted by the size bound or the TTL."},
		{MetricCacheInvalidations, "Cached windows dropped by Clear, a failed write or InvalidateCache."},
	} {
		if cs[i], err = counter(d[0], d[1]); err != nil {
			return err
		}
	}
	t.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		for i, v := range [5]uint64{s.Hits, s.Misses, s.Stale, s.Evictions, s.Invalidations} {
			o.ObserveInt64(cs[i], int64(v))
		}
		return nil
	}, cs[0], cs[1], cs[2], cs[3], cs[4])
	return err
}

// A run is one operation being recorded.
type run struct {
	op      op
	start   time.Time
	span    trace.Span // nil without a tracer
	session string     // "" for operations of a tenant
}

// start begins recording operation o on session (or the tenant) at now.
func (t *telemetry) start(ctx context.Context, o op, tenant, session string, now time.Time) (context.Context, run) {
	r := run{op: o, start: now, session: session}
	if t.tracer != nil {
		attrs := make([]attribute.KeyValue, 0, 2)
		if session != "" {
			attrs = append(attrs, attribute.String(AttrSession, session))
		}
		if tenant != "" {
			attrs = append(attrs, attribute.String(AttrTenant, tenant))
		}
		ctx, r.span = t.tracer.Start(ctx, t.spanNames[o], trace.WithAttributes(attrs...))
	}
	return ctx, r
}

// end records the end of r at now, with its error.
func (t *telemetry) end(ctx context.Context, r run, err error, now time.Time) {
	d := now.Sub(r.start)
	outcome := 0
	if err != nil {
		outcome = 1
	}
	if r.span != nil {
		if err != nil {
			r.span.RecordError(err)
			r.span.SetStatus(codes.Error, err.Error())
		}
		r.span.End()
	}
	if t.duration != nil {
		t.duration.Record(ctx, d.Seconds(), t.record[r.op][outcome]...)
	}
	if t.slow > 0 && d >= t.slow && t.log != nil {
		attrs := []slog.Attr{slog.String("op", opNames[r.op]), slog.Duration("duration", d), slog.Duration("threshold", t.slow)}
		if r.session != "" {
			attrs = append(attrs, slog.String("session", r.session))
		}
		if err != nil {
			attrs = append(attrs, slog.Any("error", err))
		}
		t.log.LogAttrs(ctx, slog.LevelWarn, "turnkeep: slow operation", attrs...)
	}
}

// obs returns m's telemetry; nil when there is nothing to record.
func (m *PersistentBufferMemory) obs() *telemetry {
	if m == nil {
		return nil
	}
	return m.tel
}

// logOn returns m's logger if it logs at level, else nil.
func (m *PersistentBufferMemory) logOn(ctx context.Context, level slog.Level) *slog.Logger {
	if m.log == nil || !m.log.Enabled(ctx, level) {
		return nil
	}
	return m.log
}

// logWrite logs, at Debug, a write of the session (the turn, and with
// WithLogContent the messages and metadata).
func (m *PersistentBufferMemory) logWrite(ctx context.Context, msg, session, turnID string, msgs []Message, meta map[string]any, res driver.Saved) {
	l := m.logOn(ctx, slog.LevelDebug)
	if l == nil {
		return
	}
	attrs := []slog.Attr{slog.String("session", session), slog.String("turn", turnID), slog.Int("messages", len(msgs)),
		slog.Bool("stored", res.Stored), slog.Int("seq", res.Seq)}
	if m.tenant != "" {
		attrs = append(attrs, slog.String("tenant", m.tenant))
	}
	attrs = append(attrs, m.contentAttrs(msgs, meta)...)
	l.LogAttrs(ctx, slog.LevelDebug, msg, attrs...)
}

// contentAttrs are the messages and metadata of a write, for a log line,
// when WithLogContent allows them; else none.
func (m *PersistentBufferMemory) contentAttrs(msgs []Message, meta map[string]any) []slog.Attr {
	if !m.logContent {
		return nil
	}
	type logged struct {
		Role     Role           `json:"role"`
		Content  string         `json:"content,omitempty"`
		Metadata map[string]any `json:"metadata,omitempty"`
	}
	out := make([]logged, len(msgs))
	for i, msg := range msgs {
		out[i] = logged{Role: msg.Role, Content: msg.Content, Metadata: msg.Metadata}
	}
	attrs := []slog.Attr{slog.Any("content", out)}
	if len(meta) > 0 {
		attrs = append(attrs, slog.Any("metadata", meta))
	}
	return attrs
}

// logInvalidated logs, at Info, a window dropped after a failed write.
func (m *PersistentBufferMemory) logInvalidated(ctx context.Context, op, key string, err error) {
	if l := m.logOn(ctx, slog.LevelInfo); l != nil {
		tenant, id := driver.ParseSessionKey(key)
		l.LogAttrs(ctx, slog.LevelInfo, "turnkeep: cached window dropped after a failed write",
			slog.String("op", op), slog.String("session", id), slog.String("tenant", tenant), slog.Any("error", err))
	}
}

// logStale logs, at Debug, a cached window another writer made stale.
func (m *PersistentBufferMemory) logStale(ctx context.Context, op, key string) {
	if l := m.logOn(ctx, slog.LevelDebug); l != nil {
		tenant, id := driver.ParseSessionKey(key)
		l.LogAttrs(ctx, slog.LevelDebug, "turnkeep: cached window changed by another writer",
			slog.String("op", op), slog.String("session", id), slog.String("tenant", tenant))
	}
}
