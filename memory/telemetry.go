package memory

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/otelx"
)

// Names of the telemetry a PersistentBufferMemory emits: its
// instrumentation scope, span names (SpanPrefix + the method's name, as
// SaveTurn, LoadContext, AppendMessages, Clear, CreateSession,
// ClaimSession, SessionInfo, ListSessions, DeleteUser, Expire, Search,
// History, Export, Import, ReplaceSession, Fork, ListForks, Summarize),
// metrics and attributes. docs/operations.md lists them all.
const (
	InstrumentationName = "github.com/turnkeep/turnkeep/memory"
	SpanPrefix          = "turnkeep."

	// MetricOperationDuration is a histogram of each operation's latency
	// in seconds, with the attributes AttrOperation and AttrOutcome.
	MetricOperationDuration = otelx.MetricOperationDuration
	// Counters of the window cache, as Stats reports them.
	MetricCacheHits          = "turnkeep.cache.hits"
	MetricCacheMisses        = "turnkeep.cache.misses"
	MetricCacheStale         = "turnkeep.cache.stale"
	MetricCacheEvictions     = "turnkeep.cache.evictions"
	MetricCacheInvalidations = "turnkeep.cache.invalidations"

	AttrOperation = otelx.AttrOperation   // the operation: its span name without SpanPrefix
	AttrOutcome   = otelx.AttrOutcome     // "ok" or "error"
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
	opSummarize
	opFork
	opListForks
	opReplaceSession
	numOps
)

var opNames = [numOps]string{
	"SaveTurn", "AppendMessages", "LoadContext", "Clear", "CreateSession", "SessionInfo",
	"ListSessions", "DeleteUser", "Expire", "Search", "History", "Export", "Import",
	"ClaimSession", "Summarize", "Fork", "ListForks", "ReplaceSession",
}

// newTelemetry returns the recorder of c's operations, or nil when there
// is nothing to record. Providers not given are otel's global ones at this
// moment; while those are still otel's defaults (no-ops), nothing is
// recorded.
func newTelemetry(c config, stats func() CacheStats) (*otelx.Recorder, error) {
	return otelx.New(otelx.Config{
		Scope: InstrumentationName, SpanPrefix: SpanPrefix, Ops: opNames[:],
		Tracer: c.tracerProvider, Meter: c.meterProvider, Log: c.logger, Slow: c.slowThreshold,
		Counters: []otelx.Counter{
			{Name: MetricCacheHits, Unit: "{window}", Description: "Loads answered from a cached window."},
			{Name: MetricCacheMisses, Unit: "{window}", Description: "Loads that read the window whole."},
			{Name: MetricCacheStale, Unit: "{window}", Description: "Cached windows found changed by another writer."},
			{Name: MetricCacheEvictions, Unit: "{window}", Description: "Cached windows evicted by the size bound or the TTL."},
			{Name: MetricCacheInvalidations, Unit: "{window}", Description: "Cached windows dropped by Clear, a failed write or InvalidateCache."},
		},
		Observe: func(v []uint64) {
			s := stats()
			copy(v, []uint64{s.Hits, s.Misses, s.Stale, s.Evictions, s.Invalidations})
		},
	})
}

// A tracing is one operation of a memory being recorded. Each method
// records itself in one line:
//
//	defer m.trace(&ctx, opSaveTurn, sessionID).end(&err)
//
// A memory with nothing to record (the default) returns the zero tracing,
// whose end does nothing: an operation pays one nil check.
type tracing struct {
	m       *PersistentBufferMemory // nil: nothing to record
	ctx     context.Context
	run     otelx.Run
	session string // "" for an operation of the tenant
}

// trace starts recording operation o on session ("" for one of the
// tenant), and replaces *ctx by the context of its span.
func (m *PersistentBufferMemory) trace(ctx *context.Context, o op, session string) tracing {
	if m == nil || m.tel == nil {
		return tracing{}
	}
	var attrs []attribute.KeyValue
	if m.tel.Tracer() != nil {
		attrs = make([]attribute.KeyValue, 0, 2)
		if session != "" {
			attrs = append(attrs, attribute.String(AttrSession, session))
		}
		if m.tenant != "" {
			attrs = append(attrs, attribute.String(AttrTenant, m.tenant))
		}
	}
	c, run := m.tel.Start(*ctx, int(o), m.now(), attrs...)
	*ctx = c
	return tracing{m: m, ctx: c, run: run, session: session}
}

// end records the end of the operation, with the error *err holds then.
func (t tracing) end(err *error) {
	if t.m == nil {
		return
	}
	var attrs []slog.Attr
	if t.session != "" {
		attrs = []slog.Attr{slog.String("session", t.session)}
	}
	t.run.End(t.ctx, *err, t.m.now(), attrs...)
}

// endLoad is end for LoadContext: the span says whether the cache
// answered.
func (t tracing) endLoad(err *error, hit *bool) {
	if t.run.Span != nil && *err == nil {
		t.run.Span.SetAttributes(attribute.Bool(AttrCacheHit, *hit))
	}
	t.end(err)
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
