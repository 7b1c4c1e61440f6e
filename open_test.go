package turnkeep

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// captureDB makes Open's database visible to the test, restoring the
// step at cleanup.
func captureDB(t *testing.T) **dataflow.DB {
	t.Helper()
	var got *dataflow.DB
	orig := openDB
	openDB = func(ctx context.Context, url string, opts ...dataflow.Option) (*dataflow.DB, error) {
		db, err := orig(ctx, url, opts...)
		got = db
		return db, err
	}
	t.Cleanup(func() { openDB = orig })
	return &got
}

// TestOpenSaveLoadClose saves and loads through Open on every dialect,
// and checks that one Close releases the database and that the turn is
// stored: a second Open sees it.
func TestOpenSaveLoadClose(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := d.URL(t)
		db := captureDB(t)
		mem, err := Open(ctx, url, Memory(memory.WithMaxTurns(3)), Backend(backend.WithSearchIndex(true)),
			Engine(dataflow.WithMaxOpenConns(4)))
		require.NoError(t, err)
		require.NotNil(t, *db)
		require.NoError(t, mem.SaveTurn(ctx, "s1", memory.Turn{User: "Hello", Agent: "Hi there"}))
		w, err := mem.LoadContext(ctx, "s1")
		require.NoError(t, err)
		require.Len(t, w.Turns, 1)
		assert.Equal(t, "Hello", w.Turns[0].User)

		require.False(t, (*db).Closed())
		require.NoError(t, mem.Close())
		assert.True(t, (*db).Closed(), "Close closes the database Open made")
		assert.ErrorIs(t, mem.SaveTurn(ctx, "s1", memory.Turn{User: "x", Agent: "y"}), memory.ErrClosed)
		assert.NoError(t, mem.Close(), "a second Close")

		again, err := Open(ctx, url)
		require.NoError(t, err)
		defer again.Close()
		w, err = again.LoadContext(ctx, "s1")
		require.NoError(t, err)
		assert.Equal(t, 1, w.TurnCount, "the turn is stored")
	})
}

// TestOpenTenantViewCloses: a tenant view shares its memory's Close, and
// with it the database's.
func TestOpenTenantViewCloses(t *testing.T) {
	db := captureDB(t)
	mem, err := Open(context.Background(), dbtest.SQLiteURL(t))
	require.NoError(t, err)
	require.NoError(t, mem.ForTenant("acme").Close())
	assert.True(t, (*db).Closed())
	assert.NoError(t, mem.Close())
}

// TestOpenBadInput: every bad option or URL is a typed error, and creates
// nothing: not even the SQLite file.
func TestOpenBadInput(t *testing.T) {
	var nilOpt Option
	cases := []struct {
		name string
		url  string
		opts []Option
		want []error
	}{
		{"nil option", "", []Option{nilOpt}, []error{ErrInvalidOption}},
		{"nil memory option", "", []Option{Memory(nil)}, []error{ErrInvalidOption}},
		{"invalid memory option", "", []Option{Memory(memory.WithMaxTurns(0))}, []error{ErrInvalidOption, memory.ErrInvalidOption}},
		{"nil backend option", "", []Option{Backend(nil)}, []error{ErrInvalidOption}},
		{"invalid backend option", "", []Option{Backend(backend.WithLogger(nil))}, []error{ErrInvalidOption}},
		{"invalid backend option beside a valid memory one", "", []Option{Memory(memory.WithMaxTurns(5)), Backend(backend.WithLogger(nil))}, []error{ErrInvalidOption}},
		{"nil engine option", "", []Option{Engine(nil)}, []error{ErrInvalidOption, dataflow.ErrInvalidOption}},
		{"invalid engine option", "", []Option{Engine(dataflow.WithMaxOpenConns(0))}, []error{ErrInvalidOption, dataflow.ErrInvalidOption}},
		{"unknown scheme", "mongodb://localhost/chat", nil, []error{ErrInvalidURL}},
		{"empty url", "-", nil, []error{ErrInvalidURL}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "chat.db")
			url := tc.url
			switch url {
			case "":
				url = "sqlite:///" + path
			case "-":
				url = ""
			}
			db := captureDB(t)
			mem, err := Open(context.Background(), url, tc.opts...)
			require.Error(t, err)
			assert.Nil(t, mem)
			for _, want := range tc.want {
				assert.ErrorIs(t, err, want)
			}
			if *db != nil {
				t.Errorf("Open opened the database for a bad input (%v)", err)
			}
			_, statErr := os.Stat(path)
			assert.True(t, errors.Is(statErr, os.ErrNotExist), "the SQLite file exists after %v", err)
		})
	}
}

// TestOpenFailsMidway: when a step after opening the database fails, Open
// closes the database before it returns the step's error.
func TestOpenFailsMidway(t *testing.T) {
	errStep := errors.New("step failed")
	steps := map[string]func(t *testing.T){
		"backend": func(t *testing.T) {
			orig := newBackend
			newBackend = func(*dataflow.DB, ...backend.Option) (*backend.DataFlowBackend, error) { return nil, errStep }
			t.Cleanup(func() { newBackend = orig })
		},
		"memory": func(t *testing.T) {
			orig := newMemory
			newMemory = func(*backend.DataFlowBackend, ...memory.Option) (*memory.PersistentBufferMemory, error) {
				return nil, errStep
			}
			t.Cleanup(func() { newMemory = orig })
		},
	}
	for name, fail := range steps {
		t.Run(name, func(t *testing.T) {
			db := captureDB(t)
			fail(t)
			mem, err := Open(context.Background(), dbtest.SQLiteURL(t), Memory(memory.WithLogger(slog.New(slog.DiscardHandler))))
			require.ErrorIs(t, err, errStep)
			assert.Nil(t, mem)
			require.NotNil(t, *db, "the database was opened")
			assert.True(t, (*db).Closed(), "and closed again")
		})
	}
}
