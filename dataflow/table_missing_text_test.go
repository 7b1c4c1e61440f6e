package dataflow_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A missing table's error names the package once, as inner says, though
// ErrTableMissing is the value migrate shares ("turnkeep: table missing").
func TestTableMissingErrorText(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	db, _ := openRec(t, dbtest.SQLiteURL(t), dataflow.WithAutoMigrate(false))
	users := register[user](t, db)
	_, err := users.Count(ctx, nil)
	require.ErrorIs(t, err, dataflow.ErrTableMissing)
	assert.Regexp(t, `^dataflow: ensure table failed: table "[^"]+": table missing$`, err.Error())
}
