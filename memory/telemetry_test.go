package memory_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

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

// Every method of a memory that takes a context records a span named
// after it (ExpireEvery records each run as Expire), whatever it returns:
// a method added without its telemetry line fails here.
func TestTelemetryEveryMethodHasASpan(t *testing.T) {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	m := newPersistent(t, backend.NewInMemoryBackend(), memory.WithTracerProvider(tp))
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "t1", User: "hi", Agent: "hello"}))
	calls := map[string]func() error{
		"SaveTurn": func() error { return m.SaveTurn(ctx, "s", memory.Turn{User: "again"}) },
		"AppendMessages": func() error {
			return m.AppendMessages(ctx, "s", "t1", memory.Message{Role: memory.RoleUser, Content: "more"})
		},
		"LoadContext":    func() error { _, err := m.LoadContext(ctx, "s"); return err },
		"Clear":          func() error { return m.Clear(ctx, "gone") },
		"CreateSession":  func() error { return m.CreateSession(ctx, memory.SessionInfo{ID: "new"}) },
		"ClaimSession":   func() error { return m.ClaimSession(ctx, "s", "ada") },
		"SessionInfo":    func() error { _, err := m.SessionInfo(ctx, "s"); return err },
		"ListSessions":   func() error { _, err := m.ListSessions(ctx, memory.SessionQuery{}); return err },
		"DeleteUser":     func() error { _, err := m.DeleteUser(ctx, "nobody"); return err },
		"Expire":         func() error { _, err := m.Expire(ctx, time.Now().Add(-time.Hour)); return err },
		"Search":         func() error { _, err := m.Search(ctx, memory.SearchQuery{Text: "hello"}); return err },
		"History":        func() error { _, err := m.History(ctx, "s", memory.HistoryQuery{}); return err },
		"Export":         func() error { return m.Export(ctx, "s", io.Discard) },
		"Import":         func() error { _, err := m.Import(ctx, strings.NewReader("")); return err },
		"ReplaceSession": func() error { return m.ReplaceSession(ctx, "new", memory.Turn{User: "replaced"}) },
		"Fork":           func() error { return m.Fork(ctx, "s", "t1", "s-fork") },
		"ListForks":      func() error { _, err := m.ListForks(ctx, "s"); return err },
		"Summarize":      func() error { _, err := m.Summarize(ctx, "s"); return err },
	}
	ctxType := reflect.TypeFor[context.Context]()
	typ := reflect.TypeFor[*memory.PersistentBufferMemory]()
	for i := range typ.NumMethod() {
		meth := typ.Method(i)
		if meth.Type.NumIn() < 2 || meth.Type.In(1) != ctxType || meth.Name == "ExpireEvery" {
			continue
		}
		t.Run(meth.Name, func(t *testing.T) {
			call, ok := calls[meth.Name]
			require.Truef(t, ok, "%s takes a context: add it to this test and give it its telemetry line", meth.Name)
			before := len(rec.Ended())
			_ = call() // a refusal records its span too
			var names []string
			for _, s := range rec.Ended()[before:] {
				names = append(names, s.Name())
			}
			assert.Contains(t, names, memory.SpanPrefix+meth.Name)
		})
	}
}
