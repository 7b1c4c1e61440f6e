package backend

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// A stmtRecord is one statement the engine ran: its text, as sent, and its
// arguments.
type stmtRecord struct {
	query string
	args  []any
}

func (s stmtRecord) String() string {
	q := oneLine(s.query)
	if len(q) > 160 {
		q = q[:160] + "…"
	}
	args := make([]string, len(s.args))
	for i, a := range s.args {
		if str, ok := a.(string); ok {
			if len(str) > 60 {
				str = str[:60] + "…"
			}
			args[i] = strconv.Quote(str)
		} else {
			args[i] = fmt.Sprint(a)
		}
	}
	return q + " [" + strings.Join(args, " ") + "]"
}

// argRecorder is a query hook that records every statement with its
// arguments (dataflow shows them to hooks as bun.QueryEvent.QueryArgs).
type argRecorder struct {
	mu   sync.Mutex // protects recs
	recs []stmtRecord
}

var _ bun.QueryHook = (*argRecorder)(nil)

func (r *argRecorder) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	r.mu.Lock()
	r.recs = append(r.recs, stmtRecord{query: ev.Query, args: append([]any(nil), ev.QueryArgs...)})
	r.mu.Unlock()
	return ctx
}

func (r *argRecorder) AfterQuery(context.Context, *bun.QueryEvent) {}

// take returns the statements recorded since the last take and forgets them.
func (r *argRecorder) take() []stmtRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := r.recs
	r.recs = nil
	return recs
}

// dataOnly keeps the statements on the models' own rows: no transaction
// control, DDL, catalog or migration history.
func dataOnly(recs []stmtRecord) []stmtRecord {
	var out []stmtRecord
	for _, r := range recs {
		if dbtest.Classify(r.query) == dbtest.KindData {
			out = append(out, r)
		}
	}
	return out
}

// openArgDB opens url with an argRecorder hook.
func openArgDB(t *testing.T, url string) (*dataflow.DB, *argRecorder) {
	t.Helper()
	rec := &argRecorder{}
	db, err := dataflow.Open(context.Background(), url, dataflow.WithQueryHook(rec))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db, rec
}

// newArgEnv opens a fresh database of dialect d, recording every
// statement with its arguments, and a backend on it.
func newArgEnv(t *testing.T, d dbtest.Dialect) (*DataFlowBackend, *argRecorder) {
	t.Helper()
	db, rec := openArgDB(t, d.URL(t))
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	return b, rec
}

// A tenantStep is one call of a public method of a tenant's memory.
type tenantStep struct {
	name string
	run  func(t *testing.T, ctx context.Context, b driver.Backend, m *memory.PersistentBufferMemory)
}

// tenantSteps call every public method of PersistentBufferMemory that
// touches the database, in every shape its statements take, on the
// sessions s1, s2 (and s3, imported) of m's tenant; the last steps remove
// every session of the tenant again.
func tenantSteps() []tenantStep {
	// view is a memory of m's tenant with a cache of its own, over the same
	// backend: another server.
	view := func(t *testing.T, b driver.Backend, m *memory.PersistentBufferMemory, opts ...memory.Option) *memory.PersistentBufferMemory {
		return newMemory(t, b, opts...).ForTenant(m.Tenant())
	}
	var export bytes.Buffer
	return []tenantStep{
		{"CreateSession", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "s1", User: "ada", Title: "plans", Metadata: map[string]any{"k": "v"}}))
		}},
		{"SaveTurn new session", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			require.NoError(t, m.SaveTurn(ctx, "s2", driver.Turn{ID: "u1", User: "loose pineapple", Agent: "ok"}))
		}},
		{"SaveTurn", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			require.NoError(t, m.SaveTurn(ctx, "s1", driver.Turn{ID: "t1", User: "hello pineapple", Agent: "hi"}))
		}},
		{"AppendMessages newest turn", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			require.NoError(t, m.AppendMessages(ctx, "s1", "t1", driver.Message{ID: "m-a", Role: driver.RoleAssistant, Content: "more pineapple"}))
		}},
		{"SaveTurn again", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			require.NoError(t, m.SaveTurn(ctx, "s1", driver.Turn{ID: "t2", User: "second question", Agent: "second answer"}))
		}},
		{"AppendMessages older turn", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			require.NoError(t, m.AppendMessages(ctx, "s1", "t1", driver.Message{ID: "m-b", Role: driver.RoleAssistant, Content: "late answer"}))
		}},
		{"LoadContext miss", func(t *testing.T, ctx context.Context, b driver.Backend, m *memory.PersistentBufferMemory) {
			w, err := view(t, b, m).LoadContext(ctx, "s1")
			require.NoError(t, err)
			require.Equal(t, 2, w.TurnCount)
		}},
		{"LoadContext hit", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			for range 2 { // the first may fill the cache; the second is a confirmed hit
				w, err := m.LoadContext(ctx, "s1")
				require.NoError(t, err)
				require.Equal(t, 2, w.TurnCount)
			}
		}},
		{"LoadContext token budget", func(t *testing.T, ctx context.Context, b driver.Backend, m *memory.PersistentBufferMemory) {
			w, err := view(t, b, m, memory.WithTokenBudget(10_000)).LoadContext(ctx, "s1")
			require.NoError(t, err)
			require.Equal(t, 2, w.TurnCount)
		}},
		{"SessionInfo", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			info, err := m.SessionInfo(ctx, "s1")
			require.NoError(t, err)
			require.Equal(t, "ada", info.User)
		}},
		{"ListSessions", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			p, err := m.ListSessions(ctx, driver.SessionQuery{Limit: 1})
			require.NoError(t, err)
			require.Len(t, p.Sessions, 1)
			require.NotEmpty(t, p.Next)
			p, err = m.ListSessions(ctx, driver.SessionQuery{Limit: 1, After: p.Next})
			require.NoError(t, err)
			require.Len(t, p.Sessions, 1)
		}},
		{"ListSessions of a user", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			require.NoError(t, m.ClaimSession(ctx, "s2", "ada"))
			p, err := m.ListSessions(ctx, driver.SessionQuery{User: "ada", Limit: 1})
			require.NoError(t, err)
			require.Len(t, p.Sessions, 1)
			require.NotEmpty(t, p.Next)
			p, err = m.ListSessions(ctx, driver.SessionQuery{User: "ada", Limit: 1, After: p.Next})
			require.NoError(t, err)
			require.Len(t, p.Sessions, 1)
		}},
		{"Search", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			for _, q := range []driver.SearchQuery{
				{Text: "pineapple"},
				{Text: "pineapple", User: "ada"},
				{Text: "pineapple", SessionID: "s1"},
				{Text: "pineapple", User: "ada", SessionID: "s2"},
			} {
				hits, err := m.Search(ctx, q)
				require.NoError(t, err)
				require.NotEmpty(t, hits, "%+v", q)
				for _, h := range hits {
					require.NotContains(t, h.Message.Content, "other tenant", "%+v", q)
				}
			}
		}},
		{"History", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			for _, newest := range []bool{false, true} {
				p, err := m.History(ctx, "s1", driver.HistoryQuery{Limit: 1, NewestFirst: newest})
				require.NoError(t, err)
				require.Len(t, p.Turns, 1)
				require.NotEmpty(t, p.Next)
				p, err = m.History(ctx, "s1", driver.HistoryQuery{Limit: 1, NewestFirst: newest, After: p.Next})
				require.NoError(t, err)
				require.Len(t, p.Turns, 1)
			}
		}},
		{"Export", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			export.Reset()
			require.NoError(t, m.Export(ctx, "s1", &export))
		}},
		{"Import", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			head, rest, ok := strings.Cut(export.String(), "\n")
			require.True(t, ok, "an export of two turns has more than one line")
			require.Contains(t, head, `"id":"s1"`)
			info, err := m.Import(ctx, strings.NewReader(strings.Replace(head, `"id":"s1"`, `"id":"s3"`, 1)+"\n"+rest))
			require.NoError(t, err)
			require.Equal(t, 2, info.TurnCount)
		}},
		{"Clear", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			require.NoError(t, m.SaveTurn(ctx, "s4", driver.Turn{User: "to be cleared"}))
			require.NoError(t, m.Clear(ctx, "s4"))
		}},
		{"Expire none", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			r, err := m.Expire(ctx, time.Now().Add(-time.Hour))
			require.NoError(t, err)
			require.Zero(t, r.Sessions)
		}},
		{"DeleteUser", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			r, err := m.DeleteUser(ctx, "ada")
			require.NoError(t, err)
			require.Equal(t, 3, r.Sessions, "s1, s2 and s3 are ada's")
		}},
		{"Expire all", func(t *testing.T, ctx context.Context, _ driver.Backend, m *memory.PersistentBufferMemory) {
			require.NoError(t, m.SaveTurn(ctx, "s5", driver.Turn{User: "soon old"}))
			r, err := m.Expire(ctx, time.Now().Add(time.Second))
			require.NoError(t, err)
			require.Equal(t, 1, r.Sessions)
		}},
	}
}

// ftsTokens matches the tenant (tk) and session (sk) tokens of an FTS5
// MATCH expression; bareToken a token bound as a search entry's column.
var (
	ftsTokens = regexp.MustCompile(`(?:tk|sk):"([tk])([0-9a-f]*)"|body:"(t)([0-9a-f]*)z`)
	bareToken = regexp.MustCompile(`^([tk])((?:[0-9a-f]{2})*)$`)
)

// argCarriesTenant reports whether arg names tenant: the tenant itself, a
// session key in it, or (SQLite search) an FTS5 token of the tenant or of a
// session key in it.
func argCarriesTenant(arg any, tenant string) bool {
	s, ok := arg.(string)
	if !ok {
		return false
	}
	keyTokens := "k" + hex.EncodeToString([]byte(tenant+"\x1f")) // the start of a session token
	return s == tenant || strings.HasPrefix(s, tenant+"\x1f") ||
		s == tenantToken(tenant) || strings.Contains(s, `tk:"`+tenantToken(tenant)+`"`) ||
		strings.Contains(s, `body:"`+tenantToken(tenant)+`z`) || // a search term, prefixed by its tenant's token
		strings.HasPrefix(s, tenantToken(tenant)+"z") ||
		strings.HasPrefix(s, keyTokens) || strings.Contains(s, `sk:"`+keyTokens)
}

// foreignArg returns why arg names another tenant than tenant, or "": a
// session key of another tenant, or an FTS5 token of one.
func foreignArg(arg any, tenant string) string {
	s, ok := arg.(string)
	if !ok {
		return ""
	}
	if strings.Contains(s, "\x1f") && !strings.HasPrefix(s, tenant+"\x1f") {
		return fmt.Sprintf("session key %q is not of tenant %q", s, tenant)
	}
	tokens := ftsTokens.FindAllStringSubmatch(s, -1)
	if m := bareToken.FindStringSubmatch(s); m != nil {
		tokens = append(tokens, m)
	}
	for _, m := range tokens {
		if len(m) > 3 && m[3] != "" { // a search term: its tenant's token, "z", the term
			m = []string{m[0], m[3], m[4]}
		}
		raw, err := hex.DecodeString(m[2])
		if err != nil {
			return fmt.Sprintf("malformed token %q", m[0])
		}
		switch name := string(raw); m[1] {
		case "t":
			if name != tenant {
				return fmt.Sprintf("tenant token of %q", name)
			}
		case "k":
			if got, _ := driver.ParseSessionKey(name); got != tenant {
				return fmt.Sprintf("session token of %q", name)
			}
		}
	}
	return ""
}

// Every statement that a tenant-scoped memory runs carries the tenant in
// its key predicate: each data statement of each public method has an
// argument naming the tenant (the tenant, a session key in it, or on
// SQLite an FTS5 token of either), and none names another tenant, though
// other tenants hold sessions of the same IDs.
func TestTenantStatementsCarryTheTenant(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, rec := newArgEnv(t, d)
		root := newMemory(t, b)
		const tenant = "acme-tenant"

		// Warm up: every statement prepared and the tables and search index
		// made, by two other tenants, whose sessions of the same IDs then
		// stay for the tenant's statements to leave alone.
		for _, other := range []string{"", "other-tenant"} {
			for _, s := range tenantSteps() {
				s.run(t, ctx, b, root.ForTenant(other))
			}
			for _, id := range []string{"s1", "s2", "s3"} {
				require.NoError(t, root.ForTenant(other).CreateSession(ctx, driver.SessionInfo{ID: id, User: "ada"}))
				require.NoError(t, root.ForTenant(other).SaveTurn(ctx, id, driver.Turn{ID: "t1", User: "other tenant pineapple"}))
			}
		}
		rec.take()

		m := root.ForTenant(tenant)
		for _, s := range tenantSteps() {
			s.run(t, ctx, b, m)
			recs := rec.take()
			data := dataOnly(recs)
			require.NotEmpty(t, data, "%s ran no data statement: %v", s.name, recs)
			t.Logf("%s: %d statements, %d on data", s.name, len(recs), len(data))
			for _, r := range data {
				t.Logf("  %v", r)
				carries := false
				for _, a := range r.args {
					carries = carries || argCarriesTenant(a, tenant)
					if why := foreignArg(a, tenant); why != "" {
						t.Errorf("%s: statement names another tenant (%s): %v", s.name, why, r)
					}
				}
				assert.True(t, carries, "%s: no argument names tenant %q: %v", s.name, tenant, r)
			}
			for _, r := range recs {
				assert.NotEqual(t, dbtest.KindDDL, dbtest.Classify(r.query), "%s: DDL after warm-up: %v", s.name, r)
			}
		}

		// The other tenants' sessions are untouched.
		for _, other := range []string{"", "other-tenant"} {
			p, err := root.ForTenant(other).ListSessions(ctx, driver.SessionQuery{})
			require.NoError(t, err)
			assert.ElementsMatch(t, []string{"s1", "s2", "s3"}, sessionIDsOf(p), "tenant %q", other)
		}
	})
}

// keyEquality matches an equality of a key column (a session row's id, a
// message's session_id, a search entry's skey) with a placeholder.
// Identifiers may be quoted, with " or (SQLite) backticks.
var keyEquality = regexp.MustCompile("(?:^|[^\\w\"`])(?:[\"`]?\\w+[\"`]?\\.)?[\"`]?(id|session_id|skey)[\"`]?\\s*=\\s*(\\?|\\$(\\d+))")

// keyInList matches a key column compared with a list: a statement over
// many sessions, which no hot-path statement may be.
var keyInList = regexp.MustCompile("(?i)(?:^|[^\\w\"`])(?:[\"`]?\\w+[\"`]?\\.)?[\"`]?(id|session_id|skey)[\"`]?\\s+IN\\s*\\(")

// keyVariable is a MySQL text's binding of the session key to the
// variable its statements compare with.
var keyVariable = regexp.MustCompile(`@tk_key = \?`)

// insertInto matches the head of an INSERT: its table and columns, then
// VALUES or SELECT.
var insertInto = regexp.MustCompile("(?is)INSERT\\s+INTO\\s+[\"`]?(\\w+)[\"`]?\\s*\\(([^)]*)\\)\\s*(VALUES|SELECT)\\b")

// placeholderAt returns the index of the argument that the placeholder at
// q[i:] binds ("?", SQLite's "?n", or "$n"), or -1 when there is none. A
// plain "?" binds the one after the greatest bound before it, as SQLite
// numbers them.
func placeholderAt(q string, i int) int {
	switch {
	case strings.HasPrefix(q[i:], "?"):
		greatest := 0 // 1-based
		for j := 0; j <= i; j++ {
			if q[j] != '?' {
				continue
			}
			k := j + 1
			for k < len(q) && q[k] >= '0' && q[k] <= '9' {
				k++
			}
			n := greatest + 1
			if k > j+1 {
				n, _ = strconv.Atoi(q[j+1 : k])
			}
			if j == i {
				return n - 1
			}
			greatest = max(greatest, n)
		}
		return -1
	case strings.HasPrefix(q[i:], "$"):
		j := i + 1
		for j < len(q) && q[j] >= '0' && q[j] <= '9' {
			j++
		}
		n, err := strconv.Atoi(q[i+1 : j])
		if err != nil {
			return -1
		}
		return n - 1
	}
	return -1
}

// splitItems splits q from start into comma-separated items at
// parenthesis depth 0, stopping at the parenthesis that closes an
// enclosing one, or (for a SELECT list) at a top-level FROM, WHERE or
// UNION. It
// returns each item's start offset in q.
func splitItems(q string, start int, selectList bool) []int {
	items := []int{start}
	depth := 0
	for i := start; i < len(q); i++ {
		switch c := q[i]; {
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return items
			}
			depth--
		case c == ',' && depth == 0:
			items = append(items, i+1)
		case selectList && depth == 0 && (i == 0 || !isWord(q[i-1])) && (hasWordAt(q, i, "FROM") || hasWordAt(q, i, "WHERE") || hasWordAt(q, i, "UNION")):
			return items
		}
	}
	return items
}

func isWord(c byte) bool { return c == '_' || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)) }

func hasWordAt(q string, i int, w string) bool {
	return len(q) >= i+len(w) && strings.EqualFold(q[i:i+len(w)], w) && (len(q) == i+len(w) || !isWord(q[i+len(w)]))
}

// itemPlaceholder returns the argument index of the placeholder that is
// the item of a VALUES tuple or SELECT list starting at q[i:] ("?", "$n",
// or either in a CAST), or -1 when the item is anything else.
func itemPlaceholder(q string, i int) int {
	end, depth := i, 0
	for ; end < len(q); end++ {
		c := q[end]
		if c == '(' {
			depth++
		} else if c == ')' || c == ',' {
			if depth == 0 {
				break
			}
			if c == ')' {
				depth--
			}
		}
	}
	item := strings.TrimSpace(q[i:end])
	offset := i + strings.Index(q[i:end], item)
	if inner, ok := strings.CutPrefix(strings.ToUpper(item), "CAST("); ok {
		if j := strings.Index(inner, " AS "); j >= 0 {
			lead := len(item) - len(inner)
			item = strings.TrimSpace(item[lead : lead+j])
			offset += lead + strings.Index(q[offset+lead:], item)
		}
	}
	if m := aliased.FindStringSubmatch(item); m != nil { // "? AS session_id"
		item = m[1]
	}
	if item == "?" || (len(item) > 1 && item[0] == '$' && isDigits(item[1:])) {
		return placeholderAt(q, offset)
	}
	return -1
}

// aliased is a placeholder with a column alias, as a derived table's
// SELECT list names its columns.
var aliased = regexp.MustCompile(`(?i)^(\?|\$\d+)\s+AS\s+\w+$`)

// derivedAll matches, at the start of an INSERT's SELECT list, the list
// "alias.*" of a derived table of rows: MySQL's insert that skips held
// rows, SELECT u.* FROM (SELECT ? AS session_id, … UNION ALL SELECT …) u.
var derivedAll = regexp.MustCompile(`(?is)^\s*\w+\.\*\s+FROM\s*\(\s*SELECT\b`)

// derivedRows returns the start of each row's SELECT list in the derived
// table whose first SELECT list starts at q[start:]: the first, and the
// one after each UNION ALL SELECT at its depth.
func derivedRows(q string, start int) []int {
	rows := []int{start}
	depth := 0
	for i := start; i < len(q); i++ {
		switch c := q[i]; {
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return rows
			}
			depth--
		case depth == 0 && (i == 0 || !isWord(q[i-1])) && hasWordAt(q, i, "UNION"):
			if m := unionSelect.FindStringIndex(q[i:]); m != nil {
				rows = append(rows, i+m[1])
			}
		}
	}
	return rows
}

var unionSelect = regexp.MustCompile(`(?is)^UNION\s+(ALL\s+)?SELECT\b`)

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// keyedInserts checks every INSERT of a key column in q: the row's key
// (the first value of each VALUES tuple at the key column, or the SELECT
// list's item there) is a placeholder bound to key. It returns how many
// inserted rows were checked.
func keyedInserts(q string, args []any, key string) (int, error) {
	checked := 0
	for _, m := range insertInto.FindAllStringSubmatchIndex(q, -1) {
		cols := strings.Split(q[m[4]:m[5]], ",")
		col := -1
		for i, c := range cols {
			switch strings.Trim(strings.TrimSpace(c), "\"`") {
			case "id", "session_id", "skey":
				col = i
			}
		}
		if col < 0 {
			return checked, fmt.Errorf("INSERT INTO %s has no key column", q[m[2]:m[3]])
		}
		bindAt := func(itemStart int) error {
			n := itemPlaceholder(q, itemStart)
			switch {
			case n < 0:
				return fmt.Errorf("INSERT INTO %s: key column %s is not bound to a placeholder", q[m[2]:m[3]], cols[col])
			case n >= len(args):
				return fmt.Errorf("INSERT INTO %s: placeholder %d of %d arguments", q[m[2]:m[3]], n+1, len(args))
			case args[n] != key:
				return fmt.Errorf("INSERT INTO %s: key %q, want %q", q[m[2]:m[3]], args[n], key)
			}
			checked++
			return nil
		}
		if strings.EqualFold(q[m[6]:m[7]], "SELECT") {
			if d := derivedAll.FindStringIndex(q[m[7]:]); d != nil {
				for _, row := range derivedRows(q, m[7]+d[1]) {
					items := splitItems(q, row, true)
					if col >= len(items) {
						return checked, fmt.Errorf("INSERT INTO %s: %d items in a derived row", q[m[2]:m[3]], len(items))
					}
					if err := bindAt(items[col]); err != nil {
						return checked, err
					}
				}
				continue
			}
			items := splitItems(q, m[7], true)
			if col >= len(items) {
				return checked, fmt.Errorf("INSERT INTO %s: %d items selected", q[m[2]:m[3]], len(items))
			}
			// SELECT columnK, … FROM (VALUES (…), …): the key is value K
			// of each tuple (SQLite's insert with compact keys).
			if c := valuesColumn.FindStringSubmatch(q[items[col]:]); c != nil {
				if v := valuesFrom.FindStringIndex(q[m[7]:]); v != nil {
					k, _ := strconv.Atoi(c[1])
					n, err := checkTuples(q, m[7]+v[1], k-1, func(item int) error { return bindAt(item) })
					if err != nil {
						return checked, err
					}
					if n == 0 {
						return checked, fmt.Errorf("INSERT INTO %s: no VALUES tuple", q[m[2]:m[3]])
					}
					continue
				}
			}
			if err := bindAt(items[col]); err != nil {
				return checked, err
			}
			continue
		}
		if _, err := checkTuples(q, m[7], col, func(item int) error { return bindAt(item) }); err != nil {
			return checked, err
		}
	}
	return checked, nil
}

var (
	valuesColumn = regexp.MustCompile(`(?i)^\s*column(\d+)\b`)
	valuesFrom   = regexp.MustCompile(`(?is)^.*?\bFROM\s*\(\s*VALUES\b`)
)

// checkTuples calls check with the start of item col of each tuple of a
// VALUES list whose first tuple follows q[start:], and returns how many.
func checkTuples(q string, start, col int, check func(item int) error) (int, error) {
	n := 0
	for i := start; ; {
		for i < len(q) && unicode.IsSpace(rune(q[i])) {
			i++
		}
		if i >= len(q) || q[i] != '(' {
			break
		}
		items := splitItems(q, i+1, false)
		if col >= len(items) {
			return n, fmt.Errorf("tuple of %d values", len(items))
		}
		if err := check(items[col]); err != nil {
			return n, err
		}
		n++
		// Past this tuple's closing parenthesis, then a comma or the end.
		depth := 0
		for ; i < len(q); i++ {
			if q[i] == '(' {
				depth++
			} else if q[i] == ')' {
				if depth--; depth == 0 {
					i++
					break
				}
			}
		}
		for i < len(q) && unicode.IsSpace(rune(q[i])) {
			i++
		}
		if i >= len(q) || q[i] != ',' {
			break
		}
		i++
	}
	return n, nil
}

// routedByKey returns an error unless the statement reaches the session's
// rows only through its key, by equality: every key column compared with
// a placeholder is bound to key, every inserted row's key is key, no key
// column is compared with a list, and the statement has at least one of
// these (or, for SQLite's FTS5 table, which has no key index, a MATCH of
// exactly the session's token).
func routedByKey(r stmtRecord, key string) error {
	q := r.query
	if loc := keyInList.FindStringIndex(q); loc != nil {
		return fmt.Errorf("key compared with a list: %q", q[loc[0]:loc[1]])
	}
	routed := 0
	for _, m := range keyEquality.FindAllStringSubmatchIndex(q, -1) {
		n := placeholderAt(q, m[4])
		switch {
		case n < 0 || n >= len(r.args):
			return fmt.Errorf("%s = placeholder %d of %d arguments", q[m[2]:m[3]], n+1, len(r.args))
		case r.args[n] == erasedDigest(key) && m[2] >= 2 && q[m[2]-2:m[2]] == "e.":
			// the DeleteUser mark (ErasedRow), keyed by the key's digest
		case r.args[n] != key:
			return fmt.Errorf("%s = %q, want %q", q[m[2]:m[3]], r.args[n], key)
		}
		routed++
	}
	// MySQL: a text of several statements binds the key to a variable
	// once (SET @tk_key = ?), and its statements compare with that.
	if loc := keyVariable.FindStringIndex(q); loc != nil {
		if n := placeholderAt(q, loc[1]-1); n < 0 || n >= len(r.args) || r.args[n] != key {
			return fmt.Errorf("@tk_key bound to placeholder %d of %q, want %q", n+1, r.args, key)
		}
		routed++
	}
	n, err := keyedInserts(q, r.args, key)
	if err != nil {
		return err
	}
	routed += n
	if strings.Contains(q, SearchTable+" MATCH ?") {
		// SQLite only: an FTS5 table is searched by its tokens.
		if len(r.args) == 0 || r.args[0] != `sk:"`+keyToken(key)+`"` {
			return fmt.Errorf("search entries matched by %q, want the session's token alone", r.args)
		}
		routed++
	}
	if routed == 0 {
		return fmt.Errorf("no equality on the session key")
	}
	return nil
}

// Every hot-path statement (save, window load, append, clear, session
// info) filters on the distribution key, the session key (sessions.id,
// messages.session_id), by equality, bound to driver.SessionKey(tenant,
// id); an insert's row carries it. Each then routes to one shard.
func TestHotPathStatementsFilterOnSessionKey(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, rec := newArgEnv(t, d)
		const tenant, id = "acme-tenant", "s1"
		key := driver.SessionKey(tenant, id)
		m := newMemory(t, b).ForTenant(tenant)
		budget := newMemory(t, b, memory.WithTokenBudget(10_000)).ForTenant(tenant)
		other := newMemory(t, b).ForTenant(tenant) // another server's cache

		steps := []struct {
			name string
			run  func() error
		}{
			{"save, new session", func() error { return m.SaveTurn(ctx, id, driver.Turn{ID: "t1", User: "hello", Agent: "hi"}) }},
			{"save", func() error { return m.SaveTurn(ctx, id, driver.Turn{ID: "t2", User: "again", Agent: "yes"}) }},
			{"save, held turn", func() error { return m.SaveTurn(ctx, id, driver.Turn{ID: "t2", User: "again", Agent: "yes"}) }},
			{"append, newest turn", func() error {
				return m.AppendMessages(ctx, id, "t2", driver.Message{ID: "x1", Role: driver.RoleAssistant, Content: "and more"})
			}},
			{"append, older turn", func() error {
				return m.AppendMessages(ctx, id, "t1", driver.Message{ID: "x2", Role: driver.RoleAssistant, Content: "late"})
			}},
			{"window load, miss", func() error { _, err := other.LoadContext(ctx, id); return err }},
			{"window load, hit", func() error { _, err := other.LoadContext(ctx, id); return err }},
			{"window load, token budget", func() error { _, err := budget.LoadContext(ctx, id); return err }},
			{"session info", func() error { _, err := m.SessionInfo(ctx, id); return err }},
			{"clear", func() error { return m.Clear(ctx, id) }},
			{"window load, no session", func() error { _, err := other.LoadContext(ctx, id); return err }},
		}
		// Warm up on another session: tables, search index, statements.
		warm := newMemory(t, b).ForTenant(tenant)
		require.NoError(t, warm.SaveTurn(ctx, "warm", driver.Turn{ID: "t1", User: "x"}))
		require.NoError(t, warm.AppendMessages(ctx, "warm", "t1", driver.Message{Role: driver.RoleAssistant, Content: "y"}))
		require.NoError(t, warm.Clear(ctx, "warm"))
		rec.take()

		for _, s := range steps {
			require.NoError(t, s.run(), s.name)
			data := dataOnly(rec.take())
			require.NotEmpty(t, data, "%s ran no data statement", s.name)
			t.Logf("%s:", s.name)
			for _, r := range data {
				t.Logf("  %v", r)
				assert.NoError(t, routedByKey(r, key), "%s: %v", s.name, r)
			}
		}
		w, err := m.LoadContext(ctx, id)
		require.NoError(t, err)
		require.Zero(t, w.TurnCount, "the steps ran: the session was cleared")
	})
}

// routedByKey itself tells routed statements from others, so that the test
// above can fail.
func TestRoutedByKey(t *testing.T) {
	const key = "acme\x1fs1"
	for _, c := range []struct {
		query string
		args  []any
		ok    bool
	}{
		{`SELECT 1 FROM t WHERE id = ?`, []any{key}, true},
		{`SELECT 1 FROM t WHERE s.id = $1`, []any{key}, true},
		{`DELETE FROM "turnkeep_messages" WHERE "session_id" = ?`, []any{key}, true},
		{"DELETE FROM \"turnkeep_messages\" WHERE `session_id` = ?", []any{key}, true},
		{"DELETE FROM \"turnkeep_messages\" WHERE `session_id` = ?", []any{"acme\x1fs2"}, false},
		{"DELETE FROM t WHERE `turn_id` = ?", []any{key}, false},
		{"DELETE FROM t WHERE `session_id` IN (?)", []any{key}, false},
		{`SELECT 1 FROM t WHERE turn_id = ? AND session_id = ?`, []any{"t1", key}, true},
		{`SELECT 1 FROM t WHERE session_id = ? AND turn_id = ?`, []any{"t1", key}, false},
		{`SELECT 1 FROM t WHERE id = ?`, []any{"acme\x1fs2"}, false},
		{`SELECT 1 FROM t WHERE tenant = ?`, []any{"acme"}, false},
		{`SELECT 1 FROM t WHERE turn_id = ?`, []any{key}, false},
		{`DELETE FROM t WHERE session_id IN (?)`, []any{key}, false},
		{`INSERT INTO t (id, tenant, n) VALUES (?, ?, 1) ON CONFLICT (id) DO NOTHING`, []any{key, "acme"}, true},
		{`INSERT INTO t (tenant, id) VALUES (?, ?)`, []any{key, "acme"}, false},
		{`INSERT INTO m (session_id, seq) VALUES (?, ?), (?, ?)`, []any{key, 1, key, 2}, true},
		{`INSERT INTO m (session_id, seq) VALUES (?, ?), (?, ?)`, []any{key, 1, "acme\x1fs2", 2}, false},
		{`INSERT INTO m (seq, session_id) SELECT s.n, CAST($2 AS TEXT) FROM s`, []any{1, key}, true},
		{`INSERT INTO m (session_id, seq) SELECT s.id, 1 FROM s`, []any{}, false},
		{`INSERT INTO m (session_id, seq) SELECT u.* FROM (SELECT ? AS session_id, ? AS seq UNION ALL SELECT ?, ?) u WHERE NOT EXISTS (SELECT 1 FROM m x WHERE x.session_id = u.session_id)`, []any{key, 1, key, 2}, true},
		{`INSERT INTO m (session_id, seq) SELECT u.* FROM (SELECT ? AS session_id, ? AS seq UNION ALL SELECT ?, ?) u`, []any{key, 1, "acme\x1fs2", 2}, false},
		{`INSERT INTO m (seq, session_id) SELECT u.* FROM (SELECT ? AS seq, 'x' AS session_id) u`, []any{1}, false},
		{`DELETE FROM ` + SearchTable + ` WHERE ` + SearchTable + ` MATCH ?`, []any{`sk:"` + keyToken(key) + `"`}, true},
		{`DELETE FROM ` + SearchTable + ` WHERE ` + SearchTable + ` MATCH ?`, []any{`sk:"` + keyToken(key) + `" OR sk:"k00"`}, false},
	} {
		err := routedByKey(stmtRecord{query: c.query, args: c.args}, key)
		assert.Equal(t, c.ok, err == nil, "%s %q: %v", c.query, c.args, err)
	}
	assert.True(t, argCarriesTenant(`tk:"`+tenantToken("acme")+`" AND body:"x"`, "acme"))
	assert.False(t, argCarriesTenant(`tk:"`+tenantToken("acme2")+`"`, "acme"))
	assert.Empty(t, foreignArg(`tk:"`+tenantToken("acme")+`" AND sk:"`+keyToken(key)+`"`, "acme"))
	assert.NotEmpty(t, foreignArg(`tk:"`+tenantToken("other")+`"`, "acme"))
	assert.True(t, argCarriesTenant(`body:"`+tenantToken("acme")+`zword"`, "acme"))
	assert.Empty(t, foreignArg(`body:"`+tenantToken("acme")+`zword" AND sk:"`+keyToken(key)+`"`, "acme"))
	assert.NotEmpty(t, foreignArg(`body:"`+tenantToken("other")+`zword"`, "acme"))
	assert.NotEmpty(t, foreignArg(`sk:"`+keyToken("other\x1fs1")+`"`, "acme"))
	assert.NotEmpty(t, foreignArg("other\x1fs1", "acme"))
}
