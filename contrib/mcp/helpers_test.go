package mcp_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	sdkmcp "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep"
	tkmcp "github.com/turnkeep/turnkeep/contrib/mcp"
	"github.com/turnkeep/turnkeep/memory"
)

// connect serves m to scope in process and returns a client session on it.
func connect(t testing.TB, m *memory.PersistentBufferMemory, scope tkmcp.Scope, opts ...tkmcp.Option) *sdkmcp.ClientSession {
	t.Helper()
	srv, err := tkmcp.NewServer(m, scope, opts...)
	require.NoError(t, err)
	return connectServer(t, srv)
}

func connectServer(t testing.TB, srv *sdkmcp.Server) *sdkmcp.ClientSession {
	t.Helper()
	ctx := context.Background()
	st, ct := sdkmcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	require.NoError(t, err)
	t.Cleanup(func() { ss.Close() })
	cs, err := sdkmcp.NewClient(&sdkmcp.Implementation{Name: "test", Version: "v0"}, nil).Connect(ctx, ct, nil)
	require.NoError(t, err)
	t.Cleanup(func() { cs.Close() })
	return cs
}

// A result is a tool's answer: its text and whether it is an error.
type result struct {
	text  string
	isErr bool
}

// call calls the tool; a protocol error fails the test, since bad
// arguments must be tool errors.
func call(t testing.TB, cs *sdkmcp.ClientSession, name string, args any) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdkmcp.CallToolParams{Name: name, Arguments: args})
	require.NoError(t, err, "%s %v: a protocol error", name, args)
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*sdkmcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return result{b.String(), res.IsError}
}

// decode calls the tool and decodes its answer, which must not be an error.
func decode[T any](t testing.TB, cs *sdkmcp.ClientSession, name string, args any) T {
	t.Helper()
	r := call(t, cs, name, args)
	require.False(t, r.isErr, "%s %v: %s", name, args, r.text)
	var v T
	require.NoError(t, json.Unmarshal([]byte(r.text), &v), r.text)
	return v
}

// The answers' shapes, as a client reads them.
type (
	hitJSON struct {
		SessionID string `json:"session_id"`
		TurnID    string `json:"turn_id"`
		Role      string `json:"role"`
		Snippet   string `json:"snippet"`
		Time      string `json:"time"`
	}
	searchJSON struct {
		Hits    []hitJSON `json:"hits"`
		Omitted int       `json:"omitted"`
	}
	sessionJSON struct {
		SessionID string `json:"session_id"`
		Title     string `json:"title"`
		TurnCount int    `json:"turn_count"`
		UpdatedAt string `json:"updated_at"`
	}
	listJSON struct {
		Sessions   []sessionJSON `json:"sessions"`
		NextCursor string        `json:"next_cursor"`
	}
	messageJSON struct {
		Role      string `json:"role"`
		Content   string `json:"content"`
		Truncated bool   `json:"truncated"`
	}
	turnJSON struct {
		TurnID   string        `json:"turn_id"`
		Time     string        `json:"time"`
		Messages []messageJSON `json:"messages"`
	}
	historyJSON struct {
		SessionID string `json:"session_id"`
		Title     string `json:"title"`
		TurnCount int    `json:"turn_count"`
		Summary   *struct {
			Text  string `json:"text"`
			Turns int    `json:"turns"`
		} `json:"summary"`
		Turns          []turnJSON `json:"turns"`
		NextBeforeTurn string     `json:"next_before_turn"`
	}
	noteJSON struct {
		SessionID string `json:"session_id"`
		TurnID    string `json:"turn_id"`
		TurnCount int    `json:"turn_count"`
	}
)

// openSQLite opens a memory on a new SQLite file.
func openSQLite(t testing.TB, opts ...memory.Option) *memory.PersistentBufferMemory {
	t.Helper()
	m, err := turnkeep.Open(context.Background(), "sqlite:///"+t.TempDir()+"/mem.db", turnkeep.Memory(opts...))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func decodeText(t testing.TB, text string, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(text), v), text)
}
