package dataflow

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/turnkeep/turnkeep/internal/otelx"
)

// Names of the telemetry a DB emits. The README lists them all.
const (
	InstrumentationName = "github.com/turnkeep/turnkeep/dataflow"

	// SpanEnsure is the span of a first-use run of a table (check, and
	// migration if needed), with AttrTable and AttrMigrated.
	SpanEnsure = "turnkeep.ensure"
	// SpanStatement is the span of each statement the engine runs (BEGIN
	// and COMMIT included), a child of the caller's span, with the
	// attributes db.system.name, db.operation.name and db.query.text (the
	// statement with its placeholders, never its values).
	SpanStatement = "turnkeep.sql"

	// MetricOperationDuration is a histogram, in seconds, of ensure runs
	// (AttrOperation "ensure", with AttrOutcome).
	MetricOperationDuration = otelx.MetricOperationDuration
	// Counters, as Stats reports them.
	MetricEnsureRuns       = "turnkeep.ensure.runs"
	MetricEnsureFailures   = "turnkeep.ensure.failures"
	MetricEnsureMigrations = "turnkeep.ensure.migrations"
	MetricRetries          = "turnkeep.retries"

	AttrOperation = otelx.AttrOperation
	AttrOutcome   = otelx.AttrOutcome // "ok" or "error"
	AttrTable     = "db.collection.name"
	AttrMigrated  = "turnkeep.migrated" // the run executed DDL
)

// newTelemetry returns the recorder of cfg's ensure runs, or nil when
// there is nothing to record. Providers not given are otel's global ones
// at this moment; while those are still otel's defaults (no-ops), nothing
// is recorded.
func newTelemetry(cfg config, stats func() Stats) (*otelx.Recorder, error) {
	return otelx.New(otelx.Config{
		Scope: InstrumentationName, SpanPrefix: "turnkeep.", Ops: []string{opEnsure},
		Tracer: cfg.tracerProvider, Meter: cfg.meterProvider, Log: cfg.logger, Slow: cfg.slowThreshold,
		Counters: []otelx.Counter{
			{Name: MetricEnsureRuns, Unit: "{run}", Description: "First-use runs of tables (check, and migration if needed)."},
			{Name: MetricEnsureFailures, Unit: "{run}", Description: "First-use runs that failed."},
			{Name: MetricEnsureMigrations, Unit: "{run}", Description: "First-use runs that executed DDL."},
			{Name: MetricRetries, Unit: "{retry}", Description: "Statements, BEGINs and ensure runs repeated after a dead pooled connection."},
		},
		Observe: func(v []uint64) {
			s := stats()
			copy(v, []uint64{s.EnsureRuns, s.Failures, s.MigrationsApplied, s.Retries})
		},
	})
}

// opEnsure is the one operation a DB records (SpanEnsure is its span).
const opEnsure = "ensure"

// statementHook is the query hook of a DB with telemetry: a span per
// statement, and a Warn line for a statement slower than the threshold.
type statementHook struct {
	rec    *otelx.Recorder
	system attribute.KeyValue // db.system.name
}

var _ bun.QueryHook = statementHook{}

func (h statementHook) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	tracer := h.rec.Tracer()
	if tracer == nil {
		return ctx
	}
	query := statementText(ev)
	ctx, _ = tracer.Start(ctx, SpanStatement, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		h.system,
		attribute.String("db.operation.name", operationName(query)),
		attribute.String("db.query.text", query)))
	return ctx
}

func (h statementHook) AfterQuery(ctx context.Context, ev *bun.QueryEvent) {
	if h.rec.Tracer() != nil {
		span := trace.SpanFromContext(ctx)
		if ev.Err != nil && !errors.Is(ev.Err, sql.ErrNoRows) {
			span.RecordError(ev.Err)
			span.SetStatus(codes.Error, ev.Err.Error())
		}
		span.End()
	}
	d := time.Since(ev.StartTime)
	if log, threshold := h.rec.Slow(d); log != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "turnkeep: slow statement",
			slog.String("statement", statementText(ev)), slog.Duration("duration", d), slog.Duration("threshold", threshold))
	}
}

// statementText is the statement with placeholders: bun formats the values
// of its own queries into Query, not into QueryTemplate.
func statementText(ev *bun.QueryEvent) string {
	if ev.QueryTemplate != "" {
		return ev.QueryTemplate
	}
	return ev.Query
}

// operationName is the statement's first keyword, upper-cased.
func operationName(query string) string {
	query = strings.TrimSpace(query)
	if i := strings.IndexAny(query, " \t\n("); i >= 0 {
		query = query[:i]
	}
	return strings.ToUpper(query)
}

// startEnsure begins recording an ensure run of table.
func (db *DB) startEnsure(ctx context.Context, table string) (context.Context, otelx.Run) {
	return db.tel.Start(ctx, 0, time.Now(), attribute.String(AttrTable, table))
}

// endEnsure records and logs the end of an ensure run.
func (db *DB) endEnsure(ctx context.Context, run otelx.Run, table string, migrated bool, err error) {
	if run.Span != nil {
		run.Span.SetAttributes(attribute.Bool(AttrMigrated, migrated))
	}
	now := time.Now()
	d := now.Sub(run.Start)
	if err != nil {
		db.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "turnkeep: ensure table failed",
			slog.String("table", table), slog.Duration("duration", d), slog.Any("error", err))
	} else {
		db.cfg.logger.LogAttrs(ctx, slog.LevelInfo, "turnkeep: table ensured",
			slog.String("table", table), slog.Bool("migrated", migrated), slog.Duration("duration", d))
	}
	run.End(ctx, err, now, slog.String("table", table))
}

// retried counts and logs, at Warn, a repeat of op after err found its
// pooled connection dead.
func (db *DB) retried(ctx context.Context, op string, attempt int, err error) {
	db.stats.retries.Add(1)
	db.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "turnkeep: retrying on another connection",
		slog.String("op", op), slog.Int("attempt", attempt), slog.Any("error", err))
}

// logOutcomeUnknown logs, at Error, a write whose outcome cannot be known
// (err wraps ErrOutcomeUnknown); nothing for any other error.
func (db *DB) logOutcomeUnknown(ctx context.Context, op string, err error) {
	if errors.Is(err, ErrOutcomeUnknown) {
		db.cfg.logger.LogAttrs(ctx, slog.LevelError, "turnkeep: write outcome unknown",
			slog.String("op", op), slog.Any("error", err))
	}
}
