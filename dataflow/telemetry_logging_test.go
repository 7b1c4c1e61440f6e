package dataflow_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// lockedBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A COMMIT whose connection is cut has an unknown outcome, logged at
// Error; a BEGIN whose connection is cut is retried on another, logged at
// Warn and counted.
func TestLoggingOutcomeUnknownAndRetries(t *testing.T) {
	p, _ := newPGProxy(t, dbtest.PostgresURL(t))
	var logs lockedBuffer
	db := open(t, p.url, dataflow.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	items := register[frozenItem](t, db)
	require.NoError(t, items.EnsureTable(testCtx(t, 10*time.Second)))
	assert.Contains(t, logs.String(), `level=INFO msg="turnkeep: table ensured" table=frozen_items migrated=true`)

	create := func(id int64) error {
		return db.RunInTx(testCtx(t, 10*time.Second), func(ctx context.Context, tx *dataflow.Tx) error {
			return items.WithTx(tx).Create(ctx, &frozenItem{ID: id, Name: "a"})
		}, items)
	}

	p.arm(func(typ byte, q []byte) bool { return typ == 'Q' && isStmt(q, "COMMIT") }, true)
	err := create(1)
	require.ErrorIs(t, err, dataflow.ErrOutcomeUnknown)
	assert.Contains(t, logs.String(), `level=ERROR msg="turnkeep: write outcome unknown" op=commit`)
	p.heal()

	before := db.Stats().Retries
	p.arm(func(typ byte, q []byte) bool { return typ == 'Q' && isStmt(q, "BEGIN") }, true)
	require.NoError(t, create(2))
	require.True(t, p.fired(), "the trigger never matched BEGIN")
	assert.Contains(t, logs.String(), `level=WARN msg="turnkeep: retrying on another connection" op=begin attempt=1`)
	assert.Greater(t, db.Stats().Retries, before, "retries counted")
}

// A failed first-use run is logged at Warn; none of the default logger's
// lines reach a discarded handler.
func TestLoggingEnsureFailure(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		var logs lockedBuffer
		db := open(t, d.URL(t), dataflow.WithAutoMigrate(false), dataflow.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		items := register[frozenItem](t, db)
		err := items.EnsureTable(testCtx(t, 10*time.Second))
		require.ErrorIs(t, err, dataflow.ErrTableMissing)
		assert.Contains(t, logs.String(), `level=WARN msg="turnkeep: ensure table failed" table=frozen_items`)
		assert.EqualValues(t, 1, db.Stats().Failures)
	})
}

func TestTelemetryOptionsInvalid(t *testing.T) {
	for name, opt := range map[string]dataflow.Option{
		"nil tracer provider": dataflow.WithTracerProvider(nil),
		"nil meter provider":  dataflow.WithMeterProvider(nil),
		"negative threshold":  dataflow.WithSlowThreshold(-time.Second),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := dataflow.Open(context.Background(), dbtest.SQLiteURL(t), opt)
			assert.ErrorIs(t, err, dataflow.ErrInvalidOption)
		})
	}
}
