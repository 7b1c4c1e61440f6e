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
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/turnkeep/turnkeep/internal/otelx"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
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
	MetricOperationDuration = "turnkeep.operation.duration"
	// Counters, as Stats reports them.
	MetricEnsureRuns       = "turnkeep.ensure.runs"
	MetricEnsureFailures   = "turnkeep.ensure.failures"
	MetricEnsureMigrations = "turnkeep.ensure.migrations"
	MetricRetries          = "turnkeep.retries"

	AttrOperation = "turnkeep.operation"
	AttrOutcome   = "turnkeep.outcome" // "ok" or "error"
	AttrTable     = "db.collection.name"
	AttrMigrated  = "turnkeep.migrated" // the run executed DDL
)

// telemetry is what a DB records beyond its counters; nil when nothing.
type telemetry struct {
	tracer   trace.Tracer            // nil: no spans
	system   attribute.KeyValue      // db.system.name
	duration metric.Float64Histogram // nil: no ensure-run latency
	record   [2][]metric.RecordOption
	reg      metric.Registration // the counters' callback; nil if none
	log      *slog.Logger
	slow     time.Duration // WithSlowThreshold; 0: off
}

// newTelemetry returns the telemetry of cfg, or nil when there is nothing
// to record. Providers not given are otel's global ones at this moment;
// while those are still otel's defaults (no-ops), nothing is recorded.
func newTelemetry(cfg config, d sqlcore.Dialect, stats func() Stats) (*telemetry, error) {
	t := &telemetry{log: cfg.logger, slow: cfg.slowThreshold, system: attribute.String("db.system.name", "sqlite")}
	switch {
	case d.PG:
		t.system = attribute.String("db.system.name", "postgresql")
	case d.MySQL:
		t.system = attribute.String("db.system.name", "mysql") // MariaDB too: one wire protocol and SQL
	}
	if tp := otelx.TracerProvider(cfg.tracerProvider); tp != nil {
		t.tracer = tp.Tracer(InstrumentationName)
	}
	if mp := otelx.MeterProvider(cfg.meterProvider); mp != nil {
		if err := t.instruments(mp.Meter(InstrumentationName), stats); err != nil {
			return nil, err
		}
	}
	if t.tracer == nil && t.duration == nil && t.slow == 0 {
		return nil, nil
	}
	return t, nil
}

func (t *telemetry) instruments(m metric.Meter, stats func() Stats) error {
	var err error
	t.duration, err = m.Float64Histogram(MetricOperationDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Latency of turnkeep operations."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err != nil {
		return err
	}
	for i, outcome := range [2]string{"ok", "error"} {
		set := attribute.NewSet(attribute.String(AttrOperation, "ensure"), attribute.String(AttrOutcome, outcome))
		t.record[i] = []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	var cs [4]metric.Int64ObservableCounter
	for i, d := range [4][3]string{
		{MetricEnsureRuns, "{run}", "First-use runs of tables (check, and migration if needed)."},
		{MetricEnsureFailures, "{run}", "First-use runs that failed."},
		{MetricEnsureMigrations, "{run}", "First-use runs that executed DDL."},
		{MetricRetries, "{retry}", "Statements, BEGINs and ensure runs repeated after a dead pooled connection."},
	} {
		if cs[i], err = m.Int64ObservableCounter(d[0], metric.WithUnit(d[1]), metric.WithDescription(d[2])); err != nil {
			return err
		}
	}
	t.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := stats()
		for i, v := range [4]uint64{s.EnsureRuns, s.Failures, s.MigrationsApplied, s.Retries} {
			o.ObserveInt64(cs[i], int64(v))
		}
		return nil
	}, cs[0], cs[1], cs[2], cs[3])
	return err
}

// statementHook is the query hook of a DB with telemetry: a span per
// statement, and a Warn line for a statement slower than the threshold.
type statementHook struct{ t *telemetry }

var _ bun.QueryHook = statementHook{}

func (h statementHook) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	if h.t.tracer == nil {
		return ctx
	}
	query := statementText(ev)
	ctx, _ = h.t.tracer.Start(ctx, SpanStatement, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		h.t.system,
		attribute.String("db.operation.name", operationName(query)),
		attribute.String("db.query.text", query)))
	return ctx
}

func (h statementHook) AfterQuery(ctx context.Context, ev *bun.QueryEvent) {
	if h.t.tracer != nil {
		span := trace.SpanFromContext(ctx)
		if ev.Err != nil && !errors.Is(ev.Err, sql.ErrNoRows) {
			span.RecordError(ev.Err)
			span.SetStatus(codes.Error, ev.Err.Error())
		}
		span.End()
	}
	if d := time.Since(ev.StartTime); h.t.slow > 0 && d >= h.t.slow {
		h.t.log.LogAttrs(ctx, slog.LevelWarn, "turnkeep: slow statement",
			slog.String("statement", statementText(ev)), slog.Duration("duration", d), slog.Duration("threshold", h.t.slow))
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

// startEnsure begins the span of an ensure run of table.
func (db *DB) startEnsure(ctx context.Context, table string) (context.Context, trace.Span, time.Time) {
	start := time.Now()
	if db.tel == nil || db.tel.tracer == nil {
		return ctx, nil, start
	}
	ctx, span := db.tel.tracer.Start(ctx, SpanEnsure, trace.WithAttributes(attribute.String(AttrTable, table)))
	return ctx, span, start
}

// endEnsure records and logs the end of an ensure run.
func (db *DB) endEnsure(ctx context.Context, span trace.Span, start time.Time, table string, migrated bool, err error) {
	d := time.Since(start)
	if span != nil {
		span.SetAttributes(attribute.Bool(AttrMigrated, migrated))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	outcome := 0
	if err != nil {
		outcome = 1
	}
	if db.tel != nil && db.tel.duration != nil {
		db.tel.duration.Record(ctx, d.Seconds(), db.tel.record[outcome]...)
	}
	if err != nil {
		db.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "turnkeep: ensure table failed",
			slog.String("table", table), slog.Duration("duration", d), slog.Any("error", err))
		return
	}
	db.cfg.logger.LogAttrs(ctx, slog.LevelInfo, "turnkeep: table ensured",
		slog.String("table", table), slog.Bool("migrated", migrated), slog.Duration("duration", d))
	if db.tel != nil && db.tel.slow > 0 && d >= db.tel.slow {
		db.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "turnkeep: slow operation",
			slog.String("op", "ensure"), slog.String("table", table), slog.Duration("duration", d), slog.Duration("threshold", db.tel.slow))
	}
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
