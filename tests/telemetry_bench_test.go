package tests

import (
	"context"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

// BenchmarkTelemetryOverhead measures SaveTurn and a cache-hit LoadContext
// (WithStaleReads, so it skips the database) with no provider configured
// (otel's default globals: "none"), with explicit no-op providers
// ("noop"), and with the SDK's providers recording every span and metric
// ("sdk"; spans sampled, nothing exported), in one run:
//
//	go test ./tests -run XXX -bench TelemetryOverhead -benchtime 2000x -count 3
func BenchmarkTelemetryOverhead(b *testing.B) {
	ctx := context.Background()
	ids := sessionIDs("tel", benchSessions)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(ctx)
		_ = mp.Shutdown(ctx)
	})
	for _, d := range benchDialects {
		b.Run(d.Name, func(b *testing.B) {
			for _, c := range []struct {
				name   string
				dbOpts []dataflow.Option
				opts   []memory.Option
			}{
				{"none", nil, nil},
				{"noop",
					[]dataflow.Option{dataflow.WithTracerProvider(tracenoop.NewTracerProvider()), dataflow.WithMeterProvider(metricnoop.NewMeterProvider())},
					[]memory.Option{memory.WithTracerProvider(tracenoop.NewTracerProvider()), memory.WithMeterProvider(metricnoop.NewMeterProvider())}},
				{"sdk",
					[]dataflow.Option{dataflow.WithTracerProvider(tp), dataflow.WithMeterProvider(mp)},
					[]memory.Option{memory.WithTracerProvider(tp), memory.WithMeterProvider(mp)}},
			} {
				b.Run("save/"+c.name, func(b *testing.B) {
					m, _ := openTurnkeep(b, d.URL(b), c.dbOpts, append([]memory.Option{memory.WithMaxTurns(benchWindow)}, c.opts...)...)
					for _, id := range ids {
						if err := m.SaveTurn(ctx, id, benchTurn); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						if err := m.SaveTurn(ctx, ids[i%len(ids)], benchTurn); err != nil {
							b.Fatal(err)
						}
						i++
					}
				})
				b.Run("hit/"+c.name, func(b *testing.B) {
					m, _ := openTurnkeep(b, d.URL(b), c.dbOpts, append([]memory.Option{memory.WithMaxTurns(benchWindow), memory.WithStaleReads(time.Hour)}, c.opts...)...)
					for _, id := range ids[:benchLoadSess] {
						for range benchWindow {
							if err := m.SaveTurn(ctx, id, benchTurn); err != nil {
								b.Fatal(err)
							}
						}
					}
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						if _, err := m.LoadContext(ctx, ids[i%benchLoadSess]); err != nil {
							b.Fatal(err)
						}
						i++
					}
				})
			}
		})
	}
}
