package backend

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// An error names the tenant and the session as their user wrote them
// (`tenant "acme" session "nope"`, or `session "nope"` in the default
// tenant), never the internal key with its U+001F separator, and names each
// layer once ("memory: ... backend: ...", never "memory:" twice). Every
// error path that names a session, or that passes a memory sentinel up
// through the backend, is triggered through a memory, for a tenant view
// and for the default tenant, on every backend.
func TestErrorsNameSessionAsWritten(t *testing.T) {
	type errCase struct {
		name     string
		run      func(ctx context.Context, m *memory.PersistentBufferMemory) error
		sentinel error
		session  string // the session the error must name; "" for none
		turn     string // the turn it must name; "" for none
		sqlOnly  bool   // the path exists only on DataFlowBackend
	}
	msg := func(id string) driver.Message {
		return driver.Message{ID: id, Role: driver.RoleAssistant, Content: "more"}
	}
	cases := []errCase{
		{name: "session info of no session", sentinel: driver.ErrSessionNotFound, session: "nope",
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				_, err := m.SessionInfo(ctx, "nope")
				return err
			}},
		{name: "export of no session", sentinel: driver.ErrSessionNotFound, session: "nope",
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				return m.Export(ctx, "nope", io.Discard)
			}},
		{name: "create a session another user owns", sentinel: driver.ErrSessionOwned, session: "owned",
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				return m.CreateSession(ctx, driver.SessionInfo{ID: "owned", User: "bob"})
			}},
		{name: "import a session another user owns", sentinel: driver.ErrSessionOwned, session: "owned",
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				_, err := m.Import(ctx, strings.NewReader(`{"format":"`+memory.ExportFormat+`","id":"owned","user":"bob"}`+"\n"))
				return err
			}},
		{name: "append to a turn the session lacks", sentinel: driver.ErrTurnNotFound, session: "s1", turn: "ghost",
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				return m.AppendMessages(ctx, "s1", "ghost", msg("g1"))
			}},
		{name: "append to a session that does not exist", sentinel: driver.ErrTurnNotFound, session: "nope", turn: "ghost",
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				return m.AppendMessages(ctx, "nope", "ghost", msg("g2"))
			}},
		{name: "save a message id another turn holds", sentinel: driver.ErrInvalidTurn, session: "s1", turn: "t2",
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				return m.SaveTurn(ctx, "s1", driver.Turn{ID: "t2", Messages: []driver.Message{{ID: "m1", Role: driver.RoleUser, Content: "again"}}})
			}},
		{name: "import a message id another turn holds", sentinel: driver.ErrInvalidImport, session: "s1", turn: "t3",
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				_, err := m.Import(ctx, strings.NewReader(`{"format":"`+memory.ExportFormat+`","id":"s1"}`+"\n"+
					`{"id":"t3","timestamp":"2026-01-02T03:04:05Z","messages":[{"id":"m1","role":"user","content":"again"}]}`+"\n"))
				return err
			}},
		{name: "replace with a turn given twice", sentinel: driver.ErrInvalidTurn,
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				t := driver.Turn{ID: "r1", User: "u"}
				return m.ReplaceSession(ctx, "s1", t, t)
			}},
		{name: "list sessions after a bad cursor", sentinel: driver.ErrInvalidCursor,
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				_, err := m.ListSessions(ctx, driver.SessionQuery{After: "not a cursor"})
				return err
			}},
		{name: "history after a bad cursor", sentinel: driver.ErrInvalidCursor,
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				_, err := m.History(ctx, "s1", driver.HistoryQuery{After: "not a cursor"})
				return err
			}},
		{name: "session info of a session whose metadata is not JSON", session: "bad", sqlOnly: true,
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				_, err := m.SessionInfo(ctx, "bad")
				return err
			}},
		{name: "list a session whose metadata is not JSON", session: "bad", sqlOnly: true,
			run: func(ctx context.Context, m *memory.PersistentBufferMemory) error {
				_, err := m.ListSessions(ctx, driver.SessionQuery{User: "mallory"})
				return err
			}},
	}
	run := func(t *testing.T, b driver.Backend, sql *DataFlowBackend) {
		ctx := context.Background()
		root := newMemory(t, b)
		for _, tenant := range []string{"acme", ""} {
			t.Run("tenant="+tenant, func(t *testing.T) {
				m := root.ForTenant(tenant)
				require.NoError(t, m.SaveTurn(ctx, "s1", driver.Turn{ID: "t1", Messages: []driver.Message{{ID: "m1", Role: driver.RoleUser, Content: "hi"}}}))
				require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "owned", User: "alice"}))
				if sql != nil {
					require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "bad", User: "mallory", Metadata: map[string]any{"k": "v"}}))
					_, err := sql.db.ExecContext(ctx, `UPDATE `+SessionsTable+` SET metadata = '{' WHERE user_id = 'mallory' AND tenant = '`+tenant+`'`)
					require.NoError(t, err)
				}
				for _, c := range cases {
					if c.sqlOnly && sql == nil {
						continue
					}
					t.Run(c.name, func(t *testing.T) {
						err := c.run(ctx, m)
						require.Error(t, err)
						if c.sentinel != nil {
							require.ErrorIs(t, err, c.sentinel)
						}
						text := err.Error()
						assert.NotContains(t, text, "\x1f", "the raw separator")
						assert.NotContains(t, text, `\x1f`, "the quoted separator")
						if c.session != "" {
							want := `session "` + c.session + `"`
							if tenant != "" {
								want = `tenant "` + tenant + `" ` + want
							}
							assert.Contains(t, text, want, "the session as its user wrote it")
						}
						if tenant == "" {
							assert.NotContains(t, text, "tenant", "the default tenant is not named")
						}
						if c.turn != "" {
							assert.Contains(t, text, c.turn, "the turn")
						}
						assertLayersOnce(t, text)
						t.Logf("%s", text)
					})
				}
			})
		}
	}
	t.Run("inmemory", func(t *testing.T) { run(t, NewInMemoryBackend(), nil) })
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, _ := newEnv(t, d)
		run(t, b, b)
	})
}

// A search of a SQLite database without a search index is
// driver.ErrNotSupported, and names the memory and the backend once each.
func TestErrorNoSearchIndexNamesLayersOnce(t *testing.T) {
	ctx := context.Background()
	b, _ := newEnv(t, dbtest.Dialect{Name: "sqlite", URL: dbtest.SQLiteURL}, WithSearchIndex(false))
	m := newMemory(t, b).ForTenant("acme")
	require.NoError(t, m.SaveTurn(ctx, "s1", driver.Turn{User: "hi"}))
	_, err := m.Search(ctx, driver.SearchQuery{Text: "hi", SessionID: "s1"})
	require.True(t, errors.Is(err, driver.ErrNotSupported), "got %v; want driver.ErrNotSupported", err)
	assertLayersOnce(t, err.Error())
}

// assertLayersOnce fails if text names a layer ("memory: ", "backend: ",
// "dataflow: " at the start of the text or of a part after ": ") more than
// once.
func assertLayersOnce(t *testing.T, text string) {
	t.Helper()
	for _, layer := range []string{"memory", "backend", "dataflow"} {
		n := len(regexp.MustCompile(`(?:^|: )`+layer+`: `).FindAllStringIndex(text, -1))
		assert.LessOrEqual(t, n, 1, "%q named %d times in %q", layer, n, text)
	}
}
