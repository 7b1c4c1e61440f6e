package backend

import (
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mysqlPlanRows reads MySQL's EXPLAIN, one line per table read:
// "table=m type=range key=PRIMARY ref=… rows=… extra=…".
func mysqlPlanRows(t testing.TB, rows *sql.Rows) []string {
	t.Helper()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var plan []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		var line []string
		for i, c := range cols {
			switch c := strings.ToLower(c); c {
			case "table", "type", "key", "ref", "rows", "extra":
				line = append(line, fmt.Sprintf("%s=%s", c, vals[i].String))
			}
		}
		plan = append(plan, strings.Join(line, " "))
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, plan)
	return plan
}

// assertMySQLLoadPlan checks the plan of the load: the session row by its
// primary key, the messages a range of theirs (session_id, seq), no full
// scan, no sort.
func assertMySQLLoadPlan(t *testing.T, plan string) {
	t.Helper()
	assert.NotRegexp(t, `type=ALL\b`, plan, "a full scan")
	assert.NotContains(t, plan, "filesort", "a sort")
	assert.NotContains(t, plan, "temporary", "a temporary table")
	assertMySQLKeyed(t, plan, "s", "PRIMARY", "the session row must be a key lookup")
	assertMySQLKeyed(t, plan, "m", "PRIMARY", "the messages must be a range of the primary key")
}

// assertMySQLPlanNoSession checks the plan of the load of a session that
// does not exist: MySQL looks the session row up by its primary key while
// planning (a const table) and, finding none, reads nothing else.
func assertMySQLPlanNoSession(t *testing.T, plan string) {
	t.Helper()
	assert.Equal(t, "table= type= key= ref= rows= extra=Impossible WHERE noticed after reading const tables", plan,
		"the session row must be read by key alone")
}

// assertMySQLBudgetPlan checks the plan of a budget window: every table
// read by an index, no full scan of the messages, no sort.
func assertMySQLBudgetPlan(t *testing.T, plan string) {
	t.Helper()
	assert.NotRegexp(t, `table=\S*m\S* type=ALL\b`, plan, "a full scan of the messages")
	assert.NotContains(t, plan, "filesort", "a sort")
	assertMySQLKeyed(t, plan, "m", "PRIMARY", "the messages must be a range of the primary key")
}

// assertMySQLListPlan checks a page of ListSessions: one read of index
// (the tenant's, or the owner's), in its order, no full scan, no sort.
func assertMySQLListPlan(t *testing.T, plan, index string) {
	t.Helper()
	assert.NotRegexp(t, `type=ALL\b`, plan, "a full scan")
	assert.NotContains(t, plan, "filesort", "a sort")
	assert.Regexp(t, `key=`+regexp.QuoteMeta(index)+`\b`, plan, "the page must be read from "+index)
}

// assertMySQLKeyed asserts that the plan reads table (its alias) by key,
// as a constant, a reference or a range.
func assertMySQLKeyed(t *testing.T, plan, table, key, msg string) {
	t.Helper()
	assert.Regexp(t, `(?m)^table=`+regexp.QuoteMeta(table)+` type=(const|system|eq_ref|ref|range) key=`+regexp.QuoteMeta(key)+` `, plan, msg)
}
