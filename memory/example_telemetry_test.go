package memory_test

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/memory"
)

// A memory records a span of every operation with the tracer provider
// given (or otel's global one), and logs with the logger given. Here spans
// go to standard output, as JSON; a real program would set up an OTLP
// exporter instead, and usually pass the same providers to
// dataflow.WithTracerProvider and dataflow.WithMeterProvider so that each
// SQL statement is a child span.
func ExampleWithTracerProvider() {
	ctx := context.Background()
	exporter, err := stdouttrace.New(stdouttrace.WithWriter(os.Stdout), stdouttrace.WithoutTimestamps())
	if err != nil {
		panic(err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exporter),
		sdktrace.WithResource(resource.Empty()),
		sdktrace.WithIDGenerator(&counterIDs{}), // fixed IDs, for the output below
	)
	defer tp.Shutdown(ctx)
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "duration" {
				return slog.Attr{} // not the same on every run
			}
			return a
		},
	}))

	m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(),
		memory.WithTracerProvider(tp), memory.WithLogger(logger), memory.WithSlowThreshold(1))
	if err != nil {
		panic(err)
	}
	if err := m.SaveTurn(ctx, "session-1", memory.Turn{ID: "turn-1", User: "hi", Agent: "hello"}); err != nil {
		panic(err)
	}
	// Output:
	// {"Name":"turnkeep.SaveTurn","SpanContext":{"TraceID":"00000000000000000000000000000001","SpanID":"0000000000000002","TraceFlags":"01","TraceState":"","Remote":false},"Parent":{"TraceID":"00000000000000000000000000000000","SpanID":"0000000000000000","TraceFlags":"00","TraceState":"","Remote":false},"SpanKind":1,"StartTime":"0001-01-01T00:00:00Z","EndTime":"0001-01-01T00:00:00Z","Attributes":[{"Key":"turnkeep.session.id","Value":{"Type":"STRING","Value":"session-1"}}],"Events":null,"Links":null,"Status":{"Code":"Unset","Description":""},"DroppedAttributes":0,"DroppedEvents":0,"DroppedLinks":0,"ChildSpanCount":0,"Resource":null,"InstrumentationScope":{"Name":"github.com/turnkeep/turnkeep/memory","Version":"","SchemaURL":"","Attributes":null},"InstrumentationLibrary":{"Name":"github.com/turnkeep/turnkeep/memory","Version":"","SchemaURL":"","Attributes":null}}
	// level=WARN msg="turnkeep: slow operation" op=SaveTurn threshold=1ns session=session-1
}

// counterIDs numbers traces and spans 1, 2, 3…
type counterIDs struct{ n uint64 }

func (g *counterIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.n++
	var tid trace.TraceID
	binary.BigEndian.PutUint64(tid[8:], g.n)
	return tid, g.NewSpanID(context.Background(), tid)
}

func (g *counterIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.n++
	var sid trace.SpanID
	binary.BigEndian.PutUint64(sid[:], g.n)
	return sid
}
