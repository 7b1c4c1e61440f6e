package memory_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/memory"
)

type logBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func debugLogger(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestTelemetryOptionsInvalid(t *testing.T) {
	for name, opt := range map[string]memory.Option{
		"nil logger":          memory.WithLogger(nil),
		"negative threshold":  memory.WithSlowThreshold(-1),
		"nil tracer provider": memory.WithTracerProvider(nil),
		"nil meter provider":  memory.WithMeterProvider(nil),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), opt)
			assert.ErrorIs(t, err, memory.ErrInvalidOption)
		})
	}
	_, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(),
		memory.WithTracerProvider(tracenoop.NewTracerProvider()), memory.WithMeterProvider(metricnoop.NewMeterProvider()),
		memory.WithSlowThreshold(0), memory.WithLogContent(false))
	assert.NoError(t, err)
}

// Coherence events are logged: a window dropped after a failed write (at
// Info, with the error) and a window another writer changed (at Debug).
func TestLoggingCoherence(t *testing.T) {
	ctx := context.Background()
	var logs logBuffer
	store := newRecordingBackend()
	a := newPersistent(t, store, memory.WithLogger(debugLogger(&logs)))
	b := newPersistent(t, store)
	require.NoError(t, a.SaveTurn(ctx, "s", memory.Turn{User: "one"}))
	require.NoError(t, b.SaveTurn(ctx, "s", memory.Turn{User: "two"}))
	_, err := a.LoadContext(ctx, "s")
	require.NoError(t, err)
	assert.Contains(t, logs.String(), `level=DEBUG msg="turnkeep: cached window changed by another writer" op=LoadContext session=s`)

	require.NoError(t, b.SaveTurn(ctx, "s", memory.Turn{User: "three"}))
	require.NoError(t, a.SaveTurn(ctx, "s", memory.Turn{User: "four"}))
	assert.Contains(t, logs.String(), `level=DEBUG msg="turnkeep: cached window changed by another writer" op=SaveTurn session=s`)

	store.fail(errors.New("disk on fire"), nil, nil)
	require.Error(t, a.SaveTurn(ctx, "s", memory.Turn{User: "five"}))
	assert.Contains(t, logs.String(), `level=INFO msg="turnkeep: cached window dropped after a failed write" op=SaveTurn session=s tenant="" error="disk on fire"`)
	assert.NotContains(t, logs.String(), "five", "content logged without WithLogContent")
}

// A failed operation's span says so; the memory's spans are roots unless
// the context holds one.
func TestTelemetrySpanError(t *testing.T) {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	m := newPersistent(t, backend.NewInMemoryBackend(), memory.WithTracerProvider(tp))
	err := m.SaveTurn(ctx, "", memory.Turn{User: "x"})
	require.ErrorIs(t, err, memory.ErrInvalidSessionID)
	spans := rec.Ended()
	require.Len(t, spans, 1)
	assert.Equal(t, "turnkeep.SaveTurn", spans[0].Name())
	assert.Equal(t, "Error", spans[0].Status().Code.String())
	assert.False(t, spans[0].Parent().IsValid())

	ctx, parent := tp.Tracer("app").Start(ctx, "request")
	_, err = m.LoadContext(ctx, "s")
	require.NoError(t, err)
	parent.End()
	spans = rec.Ended()
	require.Len(t, spans, 3)
	assert.Equal(t, parent.SpanContext().SpanID(), spans[1].Parent().SpanID(), "LoadContext is a child of the request")
}
