package otelx_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/turnkeep/turnkeep/internal/otelx"
)

// With nothing that records (no-op providers, no slow threshold), New
// returns nil, and a nil Recorder's runs do nothing.
func TestRecorderNothingToRecord(t *testing.T) {
	r, err := otelx.New(otelx.Config{Ops: []string{"op"}, Tracer: noop.NewTracerProvider(), Meter: metricnoop.NewMeterProvider()})
	if err != nil || r != nil {
		t.Fatalf("New with no-op providers: got %v, %v; want nil, nil", r, err)
	}
	ctx := context.Background()
	got, run := r.Start(ctx, 0, time.Unix(1, 0))
	if got != ctx || run.Span != nil || !run.Start.Equal(time.Unix(1, 0)) {
		t.Fatalf("nil Recorder's Start: got %v, %+v; want the same context, no span, the start time", got, run)
	}
	run.End(ctx, errors.New("x"), time.Unix(2, 0)) // must not panic
	if err := r.Close(); err != nil {
		t.Fatalf("nil Recorder's Close: %v", err)
	}
}

// A Recorder makes a span per run (named SpanPrefix + op, with the error),
// records its latency by operation and outcome, reports its counters, and
// logs a run at or over the slow threshold.
func TestRecorderRecords(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var logs bytes.Buffer
	r, err := otelx.New(otelx.Config{
		Scope: "test", SpanPrefix: "p.", Ops: []string{"a", "b"},
		Tracer: tp, Meter: mp, Log: slog.New(slog.NewTextHandler(&logs, nil)), Slow: time.Second,
		Counters: []otelx.Counter{{Name: "c1", Unit: "{x}"}, {Name: "c2", Unit: "{x}"}},
		Observe:  func(v []uint64) { v[0], v[1] = 7, 9 },
	})
	if err != nil || r == nil {
		t.Fatalf("New: %v, %v", r, err)
	}
	t0 := time.Unix(100, 0)
	ctx, run := r.Start(context.Background(), 1, t0)
	run.End(ctx, errors.New("boom"), t0.Add(2*time.Second), slog.String("k", "v"))
	_, run = r.Start(context.Background(), 0, t0)
	run.End(ctx, nil, t0.Add(time.Millisecond))

	ended := spans.Ended()
	if len(ended) != 2 || ended[0].Name() != "p.b" || ended[1].Name() != "p.a" {
		t.Fatalf("spans: got %d (%v); want p.b then p.a", len(ended), ended)
	}
	if ended[0].Status().Description != "boom" {
		t.Errorf("span status: got %q; want the error", ended[0].Status().Description)
	}
	if n := strings.Count(logs.String(), "turnkeep: slow operation"); n != 1 || !strings.Contains(logs.String(), "op=b") || !strings.Contains(logs.String(), "k=v") {
		t.Errorf("slow log: got %q; want one line for op b with k=v", logs.String())
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			found[m.Name] = true
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				if len(d.DataPoints) != 2 {
					t.Errorf("%s: got %d data points; want 2 (a ok, b error)", m.Name, len(d.DataPoints))
				}
			case metricdata.Sum[int64]:
				want := map[string]int64{"c1": 7, "c2": 9}[m.Name]
				if len(d.DataPoints) != 1 || d.DataPoints[0].Value != want {
					t.Errorf("%s: got %v; want %d", m.Name, d.DataPoints, want)
				}
			}
		}
	}
	for _, name := range []string{otelx.MetricOperationDuration, "c1", "c2"} {
		if !found[name] {
			t.Errorf("metric %s not reported; got %v", name, found)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
