package otelx

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Names every Recorder shares.
const (
	// MetricOperationDuration is the histogram of operation latencies, in
	// seconds, with the attributes AttrOperation and AttrOutcome.
	MetricOperationDuration = "turnkeep.operation.duration"
	AttrOperation           = "turnkeep.operation" // the operation's name
	AttrOutcome             = "turnkeep.outcome"   // "ok" or "error"
)

// A Config says what a Recorder records.
type Config struct {
	Scope      string               // the instrumentation scope: the package's import path
	SpanPrefix string               // an operation's span is SpanPrefix + its name
	Ops        []string             // the operations' names, indexed by Start's op
	Tracer     trace.TracerProvider // nil: otel's global one (see TracerProvider)
	Meter      metric.MeterProvider // nil: otel's global one (see MeterProvider)
	Log        *slog.Logger         // the slow operations' Warn lines; nil: none
	Slow       time.Duration        // an operation this slow or slower is logged; 0: none

	Counters []Counter             // observable counters, read when the meter collects
	Observe  func(values []uint64) // fills values, one per counter in order
}

// A Counter is an observable counter of a Recorder.
type Counter struct{ Name, Unit, Description string }

// A Recorder records operations: a span of each, its latency in the
// MetricOperationDuration histogram by operation and outcome, and a Warn
// line when it is slow; and it reports the Config's counters. It is safe
// for concurrent use. A nil *Recorder records nothing.
type Recorder struct {
	tracer   trace.Tracer            // nil: no spans
	spans    []string                // SpanPrefix + op name
	ops      []string                // op names
	duration metric.Float64Histogram // nil: no latency histogram
	record   [][2][]metric.RecordOption
	reg      metric.Registration // the counters' callback; nil if none
	log      *slog.Logger        // nil: discard
	slow     time.Duration
}

// New returns the Recorder of c, or nil when there is nothing to record:
// no tracer or meter that records anything (TracerProvider, MeterProvider)
// and no slow threshold.
func New(c Config) (*Recorder, error) {
	r := &Recorder{ops: c.Ops, log: c.Log, slow: c.Slow}
	if r.log == nil {
		r.slow = 0
	}
	if tp := TracerProvider(c.Tracer); tp != nil {
		r.tracer = tp.Tracer(c.Scope)
		r.spans = make([]string, len(c.Ops))
		for i, name := range c.Ops {
			r.spans[i] = c.SpanPrefix + name
		}
	}
	if mp := MeterProvider(c.Meter); mp != nil {
		if err := r.instruments(mp.Meter(c.Scope), c); err != nil {
			return nil, err
		}
	}
	if r.tracer == nil && r.duration == nil && r.slow == 0 {
		return nil, nil
	}
	return r, nil
}

func (r *Recorder) instruments(m metric.Meter, c Config) error {
	var err error
	r.duration, err = m.Float64Histogram(MetricOperationDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Latency of turnkeep operations."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err != nil {
		return err
	}
	r.record = make([][2][]metric.RecordOption, len(c.Ops))
	for i, name := range c.Ops {
		for j, outcome := range [2]string{"ok", "error"} {
			set := attribute.NewSet(attribute.String(AttrOperation, name), attribute.String(AttrOutcome, outcome))
			r.record[i][j] = []metric.RecordOption{metric.WithAttributeSet(set)}
		}
	}
	if len(c.Counters) == 0 {
		return nil
	}
	cs := make([]metric.Int64ObservableCounter, len(c.Counters))
	obs := make([]metric.Observable, len(c.Counters))
	for i, d := range c.Counters {
		if cs[i], err = m.Int64ObservableCounter(d.Name, metric.WithUnit(d.Unit), metric.WithDescription(d.Description)); err != nil {
			return err
		}
		obs[i] = cs[i]
	}
	observe := c.Observe
	r.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		values := make([]uint64, len(cs))
		observe(values)
		for i, v := range values {
			o.ObserveInt64(cs[i], int64(v))
		}
		return nil
	}, obs...)
	return err
}

// Tracer is the tracer of r; nil when r records no spans.
func (r *Recorder) Tracer() trace.Tracer {
	if r == nil {
		return nil
	}
	return r.tracer
}

// Slow returns the logger to log an operation that took d to, and the
// threshold it passed; a nil logger when d is not slow.
func (r *Recorder) Slow(d time.Duration) (*slog.Logger, time.Duration) {
	if r == nil || r.slow == 0 || d < r.slow {
		return nil, 0
	}
	return r.log, r.slow
}

// Close stops reporting the counters.
func (r *Recorder) Close() error {
	if r == nil || r.reg == nil {
		return nil
	}
	return r.reg.Unregister()
}

// A Run is one operation being recorded.
type Run struct {
	r     *Recorder // nil: nothing to record
	op    int
	Start time.Time  // when it began
	Span  trace.Span // nil without a tracer
}

// Start begins recording operation op at now, with a span carrying attrs.
func (r *Recorder) Start(ctx context.Context, op int, now time.Time, attrs ...attribute.KeyValue) (context.Context, Run) {
	if r == nil {
		return ctx, Run{Start: now}
	}
	run := Run{r: r, op: op, Start: now}
	if r.tracer != nil {
		ctx, run.Span = r.tracer.Start(ctx, r.spans[op], trace.WithAttributes(attrs...))
	}
	return ctx, run
}

// End records the end of the run at now, with its error: the span's
// status, the latency by outcome, and a Warn line naming the operation,
// with logAttrs, if it was slow.
func (run Run) End(ctx context.Context, err error, now time.Time, logAttrs ...slog.Attr) {
	r := run.r
	if r == nil {
		return
	}
	d := now.Sub(run.Start)
	outcome := 0
	if err != nil {
		outcome = 1
	}
	if run.Span != nil {
		if err != nil {
			run.Span.RecordError(err)
			run.Span.SetStatus(codes.Error, err.Error())
		}
		run.Span.End()
	}
	if r.duration != nil {
		r.duration.Record(ctx, d.Seconds(), r.record[run.op][outcome]...)
	}
	if log, threshold := r.Slow(d); log != nil {
		attrs := append([]slog.Attr{slog.String("op", r.ops[run.op]), slog.Duration("duration", d), slog.Duration("threshold", threshold)}, logAttrs...)
		if err != nil {
			attrs = append(attrs, slog.Any("error", err))
		}
		log.LogAttrs(ctx, slog.LevelWarn, "turnkeep: slow operation", attrs...)
	}
}
