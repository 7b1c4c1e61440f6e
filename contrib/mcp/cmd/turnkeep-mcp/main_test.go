package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	sdkmcp "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/memory"
)

// binary is the command, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "turnkeep-mcp")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "turnkeep-mcp")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// seed makes a SQLite database where ada and bob each own sessions about
// a cat, and returns its URL and a memory on it.
func seed(t *testing.T) (string, *memory.PersistentBufferMemory) {
	t.Helper()
	ctx := context.Background()
	url := "sqlite:///" + filepath.Join(t.TempDir(), "chat.db")
	m, err := turnkeep.Open(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	for _, s := range []struct{ id, user, title, text string }{
		{"ada-1", "ada", "Pets", "my cat is called Pixel"},
		{"ada-2", "ada", "Travel", "my cat hates trains"},
		{"bob-1", "bob", "Bob's pets", "my cat is called Bobsecret"},
	} {
		require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: s.id, User: s.user, Title: s.title}))
		require.NoError(t, m.SaveTurn(ctx, s.id, memory.Turn{User: s.text, Agent: "noted"}))
	}
	return url, m
}

func toolText(t *testing.T, res *sdkmcp.CallToolResult) string {
	t.Helper()
	require.NotEmpty(t, res.Content)
	tc, ok := res.Content[0].(*sdkmcp.TextContent)
	require.True(t, ok)
	return tc.Text
}

// exercise drives every tool through cs and checks the answers against m.
func exercise(t *testing.T, cs *sdkmcp.ClientSession, m *memory.PersistentBufferMemory) {
	ctx := context.Background()
	init := cs.InitializeResult()
	require.NotNil(t, init)
	assert.Equal(t, "turnkeep-mcp", init.ServerInfo.Name)
	require.NotNil(t, init.Capabilities.Tools)

	tools, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	schemas := map[string]*jsonschema.Schema{}
	for _, tool := range tools.Tools {
		assert.NotEmpty(t, tool.Description)
		var s jsonschema.Schema
		data, err := json.Marshal(tool.InputSchema)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &s))
		schemas[tool.Name] = &s
		assert.NotNil(t, tool.OutputSchema, tool.Name)
	}
	want := map[string][]string{
		"search_memory": {"query", "session_id", "limit"},
		"list_sessions": {"cursor", "limit"},
		"get_history":   {"session_id", "before_turn", "limit"},
		"save_note":     {"session_id", "text"},
	}
	required := map[string][]string{"search_memory": {"query"}, "get_history": {"session_id"}, "save_note": {"session_id", "text"}}
	require.Len(t, schemas, len(want))
	for name, props := range want {
		s := schemas[name]
		require.NotNil(t, s, name)
		assert.Equal(t, "object", s.Type, name)
		var got []string
		for p := range s.Properties {
			got = append(got, p)
		}
		assert.ElementsMatch(t, props, got, name)
		assert.ElementsMatch(t, required[name], s.Required, name)
	}

	callTool := func(name string, args map[string]any) *sdkmcp.CallToolResult {
		t.Helper()
		res, err := cs.CallTool(ctx, &sdkmcp.CallToolParams{Name: name, Arguments: args})
		require.NoError(t, err, name)
		return res
	}
	var search struct {
		Hits []struct {
			SessionID string `json:"session_id"`
			Snippet   string `json:"snippet"`
		}
	}
	res := callTool("search_memory", map[string]any{"query": "cat"})
	require.False(t, res.IsError, toolText(t, res))
	require.NoError(t, json.Unmarshal([]byte(toolText(t, res)), &search))
	hits, err := m.Search(ctx, memory.SearchQuery{Text: "cat", User: "ada"})
	require.NoError(t, err)
	require.Len(t, search.Hits, len(hits))
	for i, h := range search.Hits {
		assert.Equal(t, hits[i].SessionID, h.SessionID)
	}
	assert.NotContains(t, toolText(t, res), "Bobsecret")

	var list struct {
		Sessions []struct {
			SessionID string `json:"session_id"`
			Title     string `json:"title"`
		}
	}
	res = callTool("list_sessions", nil)
	require.False(t, res.IsError, toolText(t, res))
	require.NoError(t, json.Unmarshal([]byte(toolText(t, res)), &list))
	page, err := m.ListSessions(ctx, memory.SessionQuery{User: "ada"})
	require.NoError(t, err)
	require.Len(t, list.Sessions, len(page.Sessions))
	for i, s := range list.Sessions {
		assert.Equal(t, page.Sessions[i].ID, s.SessionID)
		assert.Equal(t, page.Sessions[i].Title, s.Title)
	}

	var hist struct {
		Turns []struct {
			TurnID   string `json:"turn_id"`
			Messages []struct{ Role, Content string }
		}
	}
	res = callTool("get_history", map[string]any{"session_id": "ada-1"})
	require.False(t, res.IsError, toolText(t, res))
	require.NoError(t, json.Unmarshal([]byte(toolText(t, res)), &hist))
	h, err := m.History(ctx, "ada-1", memory.HistoryQuery{})
	require.NoError(t, err)
	require.Len(t, hist.Turns, len(h.Turns))
	assert.Equal(t, h.Turns[0].ID, hist.Turns[0].TurnID)
	assert.Equal(t, h.Turns[0].User, hist.Turns[0].Messages[0].Content)

	res = callTool("get_history", map[string]any{"session_id": "bob-1"})
	assert.True(t, res.IsError)
	assert.Contains(t, toolText(t, res), "no such session")
	assert.NotContains(t, toolText(t, res), "Bobsecret")

	note := fmt.Sprintf("note %d: Pixel likes tuna", time.Now().UnixNano())
	res = callTool("save_note", map[string]any{"session_id": "ada-1", "text": note})
	require.False(t, res.IsError, toolText(t, res))
	h, err = m.History(ctx, "ada-1", memory.HistoryQuery{NewestFirst: true, Limit: 1})
	require.NoError(t, err)
	assert.Equal(t, note, h.Turns[0].User, "the note is in the store")

	res = callTool("search_memory", map[string]any{"query": "cat", "limit": "many"})
	assert.True(t, res.IsError, "a bad argument is a tool error")
}

// TestStdioWithSDKClient drives the built command over stdio with the
// SDK's own client.
func TestStdioWithSDKClient(t *testing.T) {
	url, m := seed(t)
	cmd := exec.Command(binary, "--db", url, "--user", "ada")
	cmd.Stderr = os.Stderr
	cs, err := sdkmcp.NewClient(&sdkmcp.Implementation{Name: "test", Version: "v0"}, nil).
		Connect(context.Background(), &sdkmcp.CommandTransport{Command: cmd}, nil)
	require.NoError(t, err)
	defer cs.Close()
	exercise(t, cs, m)
}

// bearer adds a bearer token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// startHTTP starts the command with --http on a free loopback port and
// returns its endpoint.
func startHTTP(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "TURNKEEP_MCP_TOKEN=s3cret")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	re := regexp.MustCompile(`serving (http://\S+/mcp)`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, stderr)
			return m[1]
		}
		t.Log(sc.Text())
	}
	t.Fatal("the command did not say where it serves")
	return ""
}

// TestHTTPWithSDKClient drives the command over streamable HTTP: the
// token is required, a foreign Origin is refused, and the SDK's client
// with the token uses every tool.
func TestHTTPWithSDKClient(t *testing.T) {
	url, m := seed(t)
	endpoint := startHTTP(t, "--db", url, "--user", "ada", "--http", "127.0.0.1:0", "--origin", "https://app.example")
	assert.Contains(t, endpoint, "127.0.0.1")

	post := func(header map[string]string) int {
		t.Helper()
		body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`
		req, err := http.NewRequest("POST", endpoint, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusUnauthorized, post(nil), "no token")
	assert.Equal(t, http.StatusUnauthorized, post(map[string]string{"Authorization": "Bearer wrong"}), "a wrong token")
	assert.Equal(t, http.StatusForbidden, post(map[string]string{"Authorization": "Bearer s3cret", "Origin": "https://evil.example"}), "a foreign origin")
	assert.Equal(t, http.StatusOK, post(map[string]string{"Authorization": "Bearer s3cret", "Origin": "https://app.example"}), "an allowed origin")
	assert.Equal(t, http.StatusOK, post(map[string]string{"Authorization": "Bearer s3cret"}), "no origin: not a browser")

	transport := &sdkmcp.StreamableClientTransport{
		Endpoint:   endpoint,
		HTTPClient: &http.Client{Transport: bearer{"s3cret", http.DefaultTransport}},
	}
	cs, err := sdkmcp.NewClient(&sdkmcp.Implementation{Name: "test", Version: "v0"}, nil).Connect(context.Background(), transport, nil)
	require.NoError(t, err)
	defer cs.Close()
	exercise(t, cs, m)
}

// TestRawJSONRPCOverStdio is what a bare client does: write JSON-RPC
// lines, close stdin, read every answer.
func TestRawJSONRPCOverStdio(t *testing.T) {
	url, _ := seed(t)
	requests := []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search_memory","arguments":{"query":"cat"}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"search_memory","arguments":{"query":"Bobsecret"}}}`,
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get_history","arguments":{"session_id":42}}}`,
		`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"get_history","arguments":{"session_id":"bob-1"}}}`,
	}
	cmd := exec.Command(binary, "--db", url, "--user", "ada")
	cmd.Stdin = strings.NewReader(strings.Join(requests, "\n") + "\n")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err)

	type answer struct {
		ID     int             `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	answers := map[int]answer{}
	for line := range strings.Lines(string(out)) {
		var a answer
		require.NoError(t, json.Unmarshal([]byte(line), &a), "stdout holds only JSON-RPC: %q", line)
		answers[a.ID] = a
	}
	for id := 1; id <= 6; id++ {
		require.Contains(t, answers, id, "every request is answered")
		require.Empty(t, answers[id].Error, "request %d: no protocol error", id)
	}
	var list struct{ Tools []struct{ Name string } }
	require.NoError(t, json.Unmarshal(answers[2].Result, &list))
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	assert.Equal(t, []string{"get_history", "list_sessions", "save_note", "search_memory"}, names)

	type callResult struct {
		IsError bool `json:"isError"`
		Content []struct{ Text string }
	}
	var r callResult
	require.NoError(t, json.Unmarshal(answers[3].Result, &r))
	assert.False(t, r.IsError)
	assert.Contains(t, r.Content[0].Text, "Pixel", "ada's messages are found")
	assert.NotContains(t, r.Content[0].Text, "Bobsecret", "bob's never are")
	require.NoError(t, json.Unmarshal(answers[4].Result, &r))
	assert.False(t, r.IsError)
	assert.NotContains(t, r.Content[0].Text, "Bobsecret")
	assert.JSONEq(t, `{"hits":[]}`, r.Content[0].Text)
	for _, id := range []int{5, 6} {
		r = callResult{}
		require.NoError(t, json.Unmarshal(answers[id].Result, &r))
		assert.True(t, r.IsError, "request %d is a tool error", id)
		assert.Contains(t, r.Content[0].Text, "session_id")
	}
}

// TestNeverMigrates: a database that needs migrating is an error naming
// `turnkeep migrate up`, and the command leaves it as it was.
func TestNeverMigrates(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	require.NoError(t, os.WriteFile(empty, nil, 0o600)) // an SQLite database with no tables
	for _, c := range []struct{ name, path string }{
		{"missing file", filepath.Join(dir, "missing.db")},
		{"no tables", empty},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(binary, "--db", "sqlite:///"+c.path, "--user", "ada")
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			require.Error(t, err)
			assert.Contains(t, string(out), "turnkeep migrate up")
			if c.path == empty {
				db, err := sql.Open("sqlite", empty)
				require.NoError(t, err)
				defer db.Close()
				var n int
				require.NoError(t, db.QueryRow(`SELECT count(*) FROM sqlite_master`).Scan(&n))
				assert.Zero(t, n, "no table, index or trigger was created")
			} else {
				assert.NoFileExists(t, c.path)
			}
		})
	}
}

// TestUsage: the flags the command cannot run without.
func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "ada"}, "--db"},
		{[]string{"--db", "sqlite:///x.db"}, "--user"},
		{[]string{"--db", "sqlite:///x.db", "--user", "ada", "--http", ":0"}, "token"},
		{[]string{"--db", "nosuch://x", "--user", "ada"}, "scheme"},
	} {
		cmd := exec.Command(binary, c.args...)
		cmd.Env = append(os.Environ(), "TURNKEEP_MCP_TOKEN=", "TURNKEEP_DB_URL=")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "%v", c.args)
		assert.Equal(t, 2, exit.ExitCode(), "%v: %s", c.args, out)
		assert.Contains(t, string(out), c.want, "%v", c.args)
	}
}

// TestReadmeConfig: the README's MCP client configuration launches this
// command with flags it takes.
func TestReadmeConfig(t *testing.T) {
	readme, err := os.ReadFile("../../../../README.md")
	require.NoError(t, err)
	re := regexp.MustCompile("(?s)```json\n(\\{\\s*\"mcpServers\".*?)```")
	m := re.FindSubmatch(readme)
	require.NotNil(t, m, "the README shows an mcpServers configuration")
	var cfg struct {
		MCPServers map[string]struct {
			Command string   `json:"command"`
			Args    []string `json:"args"`
		} `json:"mcpServers"`
	}
	require.NoError(t, json.Unmarshal(m[1], &cfg))
	require.Contains(t, cfg.MCPServers, "turnkeep")
	s := cfg.MCPServers["turnkeep"]
	assert.Equal(t, "turnkeep-mcp", s.Command)
	o, err := parse(s.Args, io.Discard)
	require.NoError(t, err)
	assert.NotEmpty(t, o.db)
	assert.NotEmpty(t, o.user)
}

// TestReadOnly: --read-only leaves save_note out.
func TestReadOnly(t *testing.T) {
	url, _ := seed(t)
	cmd := exec.Command(binary, "--db", url, "--user", "ada", "--read-only")
	cmd.Stderr = os.Stderr
	cs, err := sdkmcp.NewClient(&sdkmcp.Implementation{Name: "test", Version: "v0"}, nil).
		Connect(context.Background(), &sdkmcp.CommandTransport{Command: cmd}, nil)
	require.NoError(t, err)
	defer cs.Close()
	tools, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	assert.Equal(t, []string{"get_history", "list_sessions", "search_memory"}, names)
}
