package dataflow_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/testutil"
)

func TestOpenURLs(t *testing.T) {
	pgURL := func(scheme string) func(t *testing.T) (string, string) {
		return func(t *testing.T) (string, string) {
			u := dbtest.PostgresURL(t) // skips without the variable
			return scheme + "://" + strings.SplitN(u, "://", 2)[1], ""
		}
	}
	tests := []struct {
		name string
		// url returns the URL and the file the database must be in ("" if none).
		url     func(t *testing.T) (string, string)
		dialect string
	}{
		{"sqlite relative", func(t *testing.T) (string, string) {
			dir := t.TempDir()
			t.Chdir(dir)
			return "sqlite:///rel.db", filepath.Join(dir, "rel.db")
		}, "sqlite"},
		{"sqlite relative in a subdirectory", func(t *testing.T) (string, string) {
			dir := t.TempDir()
			t.Chdir(dir)
			require.NoError(t, os.Mkdir("sub", 0o755))
			return "sqlite:///sub/rel.db", filepath.Join(dir, "sub", "rel.db")
		}, "sqlite"},
		{"sqlite absolute", func(t *testing.T) (string, string) {
			p := filepath.Join(t.TempDir(), "abs.db")
			require.True(t, filepath.IsAbs(p))
			return "sqlite:///" + p, p
		}, "sqlite"},
		{"sqlite absolute, escaped space and hash", func(t *testing.T) (string, string) {
			p := filepath.Join(t.TempDir(), "a b#c.db")
			return "sqlite:///" + strings.ReplaceAll(strings.ReplaceAll(p, " ", "%20"), "#", "%23"), p
		}, "sqlite"},
		{"sqlite memory", func(*testing.T) (string, string) { return "sqlite:///:memory:", "" }, "sqlite"},
		{"plain memory", func(*testing.T) (string, string) { return ":memory:", "" }, "sqlite"},
		{"postgres", pgURL("postgres"), "pg"},
		{"postgresql", pgURL("postgresql"), "pg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t, time.Minute)
			url, file := tt.url(t)
			db := open(t, url)
			assert.Equal(t, tt.dialect, db.Dialect())
			users := register[user](t, db)
			require.NoError(t, users.Create(ctx, &user{Name: "ann", Created: time.Now()}))
			n, err := users.Count(ctx, nil)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			if file != "" {
				fi, err := os.Stat(file)
				require.NoError(t, err, "database file")
				assert.Positive(t, fi.Size())
			}
		})
	}
}

// The in-memory database is one database shared by every goroutine of one
// DB, and a separate one per Open.
func TestOpenMemoryShared(t *testing.T) {
	for _, url := range []string{":memory:", "sqlite:///:memory:"} {
		t.Run(url, func(t *testing.T) {
			const workers = 8
			ctx := testCtx(t, time.Minute)
			db := open(t, url)
			users := register[user](t, db)
			var wg sync.WaitGroup
			var wrote atomic.Int64
			for i := range workers {
				wg.Go(func() {
					if assert.NoError(t, users.Create(ctx, &user{Name: fmt.Sprint(i), Created: time.Now()})) {
						wrote.Add(1)
					}
				})
			}
			testutil.Wait(t, &wg, 30*time.Second)
			require.EqualValues(t, workers, wrote.Load())
			seen := make([]int, workers)
			for i := range workers {
				wg.Go(func() {
					n, err := users.Count(ctx, nil)
					assert.NoError(t, err)
					seen[i] = n
				})
			}
			testutil.Wait(t, &wg, 30*time.Second)
			for i, n := range seen {
				assert.Equal(t, workers, n, "goroutine %d saw %d rows", i, n)
			}
			require.NoError(t, db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
				return users.WithTx(tx).Create(ctx, &user{Name: "tx", Created: time.Now()})
			}))

			other := open(t, url)
			otherUsers := register[user](t, other)
			n, err := otherUsers.Count(ctx, nil)
			require.NoError(t, err)
			assert.Zero(t, n, "a second Open of %s shares the first one's data", url)
		})
	}
}

func TestOpenInvalidURL(t *testing.T) {
	for _, url := range []string{
		"",
		"oracle://u@localhost/db",
		"mysql://",
		"mysql://u@127.0.0.1:1",
		"mysql://u@127.0.0.1:1/",
		"mysql://u@127.0.0.1:1/db#frag",
		"file:x.db",
		"x.db",
		"sqlite:",
		"sqlite://",
		"sqlite:///",
		"sqlite://rel.db",
		"sqlite:///x.db?mode=ro",
		"sqlite:///x.db#frag",
		"sqlite:///bad%zzescape.db",
		"postgres://",
		"postgres:///db",
		"postgresql://%zz@/db",
	} {
		t.Run(url, func(t *testing.T) {
			_, err := dataflow.Open(t.Context(), url)
			require.ErrorIs(t, err, dataflow.ErrInvalidURL)
		})
	}
	t.Run("unknown scheme is named", func(t *testing.T) {
		_, err := dataflow.Open(t.Context(), "oracle://u@localhost/db")
		require.ErrorIs(t, err, dataflow.ErrInvalidURL)
		assert.Contains(t, err.Error(), `"oracle"`)
	})
}

// A password in the URL appears in no error and no log line.
func TestOpenNeverLeaksPassword(t *testing.T) {
	for _, url := range []string{
		"postgres://u:SECRET@127.0.0.1:1/db",
		"postgresql://u:SECRET@127.0.0.1:1/db?sslmode=disable",
		"postgres://u:SECRET@127.0.0.1:1/db?connect_timeout=1",
		"postgres://127.0.0.1:1/db?user=u&password=SECRET",
		"postgres://u:SECRET@/db",
		"postgres://u:SECRET@[::1/db",
		"postgres://u:SECRET@127.0.0.1:notaport/db",
		"postgres://u:SECRET@127.0.0.1:1/db?password=SECRET",
		"mysql://u:SECRET@127.0.0.1:1/db", // port 1: refused, never the machine's server
		"mysql://u:SECRET@127.0.0.1:1/db?password=SECRET",
		"host=127.0.0.1 port=1 user=u password=SECRET dbname=db", // a key=value DSN
		"SECRET",
	} {
		t.Run(url, func(t *testing.T) {
			var logs bytes.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			db, err := dataflow.Open(ctx, url, dataflow.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			if db != nil {
				db.Close()
			}
			require.Error(t, err)
			for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), logs.String()} {
				assert.NotContains(t, text, "SECRET")
			}
		})
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	for name, tc := range map[string]struct{ dir, want string }{
		"missing":     {filepath.Join(base, "nope", "deeper"), "does not exist"},
		"not a dir":   {file, "is not a directory"},
		"missing rel": {"nope-" + filepath.Base(base), "does not exist"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := tc.dir
			p := filepath.Join(dir, "x.db")
			_, err := dataflow.Open(t.Context(), "sqlite:///"+p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), dir, "the error names the directory")
			_, statErr := os.Stat(p)
			assert.True(t, os.IsNotExist(statErr) || strings.Contains(fmt.Sprint(statErr), "not a directory"), "a file was created: %v", statErr)
		})
	}
}

// Every pooled SQLite connection gets WAL, the busy timeout, foreign keys
// and the synchronous level.
func TestSQLitePragmas(t *testing.T) {
	tests := []struct {
		name        string
		opts        []dataflow.Option
		busyTimeout int64
		synchronous int64 // 1 NORMAL, 2 FULL
	}{
		{"defaults", nil, dataflow.DefaultBusyTimeout.Milliseconds(), 1},
		{"options", []dataflow.Option{dataflow.WithBusyTimeout(2500 * time.Millisecond), dataflow.WithSynchronousFull(true)}, 2500, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t, time.Minute)
			db := open(t, dbtest.SQLiteURL(t), tt.opts...)
			// Hold several connections at once, so each is a different one.
			for i := range 3 {
				conn, err := db.Bun().DB.Conn(ctx)
				require.NoError(t, err)
				defer conn.Close()
				var mode string
				var busy, fk, sync int64
				require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
				require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy))
				require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk))
				require.NoError(t, conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync))
				assert.Equal(t, "wal", strings.ToLower(mode), "conn %d journal_mode", i)
				assert.Equal(t, tt.busyTimeout, busy, "conn %d busy_timeout", i)
				assert.EqualValues(t, 1, fk, "conn %d foreign_keys", i)
				assert.Equal(t, tt.synchronous, sync, "conn %d synchronous", i)
			}
		})
	}
}

// Concurrent writers on one database never see "database is locked".
func TestConcurrentWritesNeverLocked(t *testing.T) {
	const workers = 16
	const runFor = 700 * time.Millisecond
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db := open(t, d.URL(t))
		users := register[user](t, db)
		rows := register[batchRow](t, db)
		require.NoError(t, users.EnsureTable(ctx))
		require.NoError(t, rows.EnsureTable(ctx))
		var created, bulk, ops, failed atomic.Int64
		stop := time.Now().Add(runFor)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := 0; time.Now().Before(stop); i++ {
					var err error
					switch i % 4 {
					case 0:
						u := user{Name: fmt.Sprint(w, "-", i), Created: time.Now()}
						if err = users.Create(ctx, &u); err == nil {
							created.Add(1)
							u.Age = i
							err = users.Update(ctx, &u)
						}
					case 1:
						id := int64(w)*1_000_000 + int64(i)*10
						if err = rows.BulkCreate(ctx, batchRows(5, id)); err == nil {
							bulk.Add(5)
						}
					case 2:
						err = db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
							u := users.WithTx(tx)
							if _, err := u.Count(ctx, dataflow.Filter{"age": dataflow.Gt(0)}); err != nil {
								return err
							}
							return u.Create(ctx, &user{Name: "tx", Created: time.Now()})
						})
						if err == nil {
							created.Add(1)
						}
					default:
						_, err = users.BulkUpdate(ctx, dataflow.Filter{"name": fmt.Sprint(w, "-", i-3)}, map[string]any{"score": 1.5})
					}
					ops.Add(1)
					if err != nil {
						failed.Add(1)
						t.Errorf("worker %d op %d: %v", w, i, err)
						return
					}
				}
			})
		}
		testutil.Wait(t, &wg, 45*time.Second)
		assert.Zero(t, failed.Load(), "failed operations")
		assert.Greater(t, ops.Load(), int64(workers*4), "too few operations to mean anything")
		n, err := users.Count(ctx, nil)
		require.NoError(t, err)
		assert.EqualValues(t, created.Load(), n)
		m, err := rows.Count(ctx, nil)
		require.NoError(t, err)
		assert.EqualValues(t, bulk.Load(), m)
		t.Logf("%d operations by %d goroutines in %v", ops.Load(), workers, runFor)
	})
}
