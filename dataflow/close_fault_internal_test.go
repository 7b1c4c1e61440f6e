package dataflow

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// errDiskFull stands for SQLITE_FULL in failingCkptConn.
var errDiskFull = errors.New("database or disk is full (13)")

// failingCkptConn is a driver connection on which the checkpointer's
// set-up statements work and every checkpoint fails, as on a full disk,
// without needing one (TestCloseDiskFull needs root to mount a tmpfs).
type failingCkptConn struct{}

func (failingCkptConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not supported") }
func (failingCkptConn) Close() error                        { return nil }
func (failingCkptConn) Begin() (driver.Tx, error)           { return nil, errors.New("not supported") }

func (failingCkptConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	return driver.RowsAffected(0), nil // PRAGMA busy_timeout
}

func (failingCkptConn) QueryContext(_ context.Context, query string, _ []driver.NamedValue) (driver.Rows, error) {
	if strings.Contains(query, "wal_checkpoint") {
		return nil, errDiskFull
	}
	return &pageSizeRows{}, nil // PRAGMA page_size
}

// pageSizeRows is the answer to PRAGMA page_size.
type pageSizeRows struct{ done bool }

func (*pageSizeRows) Columns() []string { return []string{"page_size"} }
func (*pageSizeRows) Close() error      { return nil }
func (r *pageSizeRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = int64(4096)
	return nil
}

type failingCkptConnector struct{}

func (failingCkptConnector) Connect(context.Context) (driver.Conn, error) {
	return failingCkptConn{}, nil
}
func (c failingCkptConnector) Driver() driver.Driver { return failingCkptDriver{} }

type failingCkptDriver struct{}

func (failingCkptDriver) Open(string) (driver.Conn, error) { return failingCkptConn{}, nil }

// A checkpointer whose final checkpoint fails (a full disk) returns the
// error from close instead of panicking: the failed checkpoint discarded
// its connection, and close then discarded the nil connection left behind.
func TestCheckpointerCloseAfterFailedCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	file, err := statDBFile(path)
	require.NoError(t, err)
	cfg, err := newConfig(nil)
	require.NoError(t, err)
	cfg.checkpointEvery = DefaultCheckpointEvery

	c := startCheckpointer(sql.OpenDB(failingCkptConnector{}), file, cfg)
	require.NotNil(t, c)
	require.NotPanics(t, func() { err = c.close() })
	assert.ErrorIs(t, err, errDiskFull, "close reports the failed checkpoint")
	assert.Nil(t, c.conn)
}
