package migrate_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/migrate"
)

// openBun opens a *bun.DB of its own (its own connection pool, as another
// process would have) on a dbtest URL, closed at cleanup.
func openBun(t testing.TB, url string) *bun.DB {
	t.Helper()
	var db *bun.DB
	if path, ok := strings.CutPrefix(url, "sqlite:///"); ok {
		sqldb, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
		require.NoError(t, err)
		db = bun.NewDB(sqldb, sqlitedialect.New())
	} else if strings.HasPrefix(url, "mysql://") {
		dsn, err := dbtest.MySQLDSN(url)
		require.NoError(t, err)
		sqldb, err := sql.Open("mysql", dsn)
		require.NoError(t, err)
		db = bun.NewDB(sqldb, mysqldialect.New())
	} else {
		sqldb, err := sql.Open("pgx", url)
		require.NoError(t, err)
		db = bun.NewDB(sqldb, pgdialect.New())
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, db.PingContext(ctx))
	return db
}

// recorder is a bun.QueryHook that keeps the text of every statement.
type recorder struct {
	mu    sync.Mutex // protects stmts
	stmts []string
}

func (r *recorder) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (r *recorder) AfterQuery(_ context.Context, ev *bun.QueryEvent) {
	r.mu.Lock()
	r.stmts = append(r.stmts, ev.Query)
	r.mu.Unlock()
}

// take returns the statements seen since the last take and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.stmts
	r.stmts = nil
	return out
}

// writes returns the statements that change the schema or the data.
func writes(stmts []string) []string {
	var out []string
	for _, s := range stmts {
		verb := strings.ToUpper(strings.Fields(strings.TrimSpace(s) + " x")[0])
		switch verb {
		case "CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE":
			out = append(out, s)
		}
	}
	return out
}

// env is one fresh database with a migrator whose statements are recorded.
type env struct {
	d   dbtest.Dialect
	url string
	db  *bun.DB // with the recorder hook
	rec *recorder
	m   *migrate.Migrator
}

func newEnv(t *testing.T, d dbtest.Dialect) *env {
	t.Helper()
	e := &env{d: d, url: d.URL(t)}
	e.reopen(t)
	return e
}

// reopen simulates a process restart: a new *bun.DB and a new Migrator on
// the same database.
func (e *env) reopen(t *testing.T) {
	t.Helper()
	e.rec = &recorder{}
	e.db = openBun(t, e.url).WithQueryHook(e.rec)
	m, err := migrate.New(e.db)
	require.NoError(t, err)
	e.m = m
}

func (e *env) pg() bool { return e.d.Name == "pg" }

func (e *env) mysql() bool { return e.d.Name == "mysql" }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func columnNames(ti *migrate.TableInfo) []string {
	out := make([]string, len(ti.Columns))
	for i, c := range ti.Columns {
		out[i] = c.Name
	}
	return out
}

func kinds(steps []migrate.Step) []migrate.StepKind {
	out := make([]migrate.StepKind, len(steps))
	for i, s := range steps {
		out[i] = s.Kind
	}
	return out
}
