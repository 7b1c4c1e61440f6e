package backend

import (
	"context"
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
// scan of a table, no sort. The fork chain's CTE rows (<derivedN>,
// <unionN,M>: the session's row and its ancestors', one each) are read
// whole, as a CTE is.
func assertMySQLLoadPlan(t *testing.T, plan string) {
	t.Helper()
	assert.NotRegexp(t, `table=[^<\s]\S* type=ALL\b`, plan, "a full scan")
	assert.NotContains(t, plan, "filesort", "a sort")
	assert.NotContains(t, plan, "temporary", "a temporary table")
	assertMySQLKeyed(t, plan, "s", "PRIMARY", "the session row must be a key lookup")
	assertMySQLKeyed(t, plan, "m", "PRIMARY", "the messages must be a range of the primary key")
}

// assertMySQLPlanNoSession checks the plan of the load of a session that
// does not exist: MySQL looks the session row up by its primary key while
// planning (a const table) and, finding none, reads no table: each part
// of the statement is an impossible WHERE or finds no const row, and only
// the (empty) chain CTE is left.
func assertMySQLPlanNoSession(t *testing.T, plan string) {
	t.Helper()
	for _, line := range strings.Split(plan, "\n") {
		assert.Regexp(t, `^table=(<union\d+,\d+>)? type=(ALL)? key= ref= rows= extra=(Impossible WHERE noticed after reading const tables|no matching row in const table)?$`, line,
			"the session row must be read by key alone")
	}
}

// mysqlHandlerReads returns how many rows and index entries the server
// reads while load runs (its handler counters, less what reading them
// costs): a measure of a statement EXPLAIN does not take, such as a text
// of several. The pool is held to one connection meanwhile, so that the
// counters are the session's, whatever other tests run on the server.
func mysqlHandlerReads(t *testing.T, b *DataFlowBackend, load func()) int64 {
	t.Helper()
	pool := b.db.Bun().DB
	pool.SetMaxOpenConns(1)
	defer pool.SetMaxOpenConns(0)
	reads := func() int64 {
		rows, err := b.db.QueryContext(context.Background(), "SHOW SESSION STATUS WHERE Variable_name IN ('Handler_read_next', 'Handler_read_rnd_next', 'Handler_read_prev', 'Handler_read_key')")
		require.NoError(t, err)
		defer rows.Close()
		var sum int64
		for rows.Next() {
			var name string
			var v int64
			require.NoError(t, rows.Scan(&name, &v))
			sum += v
		}
		require.NoError(t, rows.Err())
		return sum
	}
	before := reads()
	overhead := reads() - before // the SHOW's own reads
	before = reads()
	load()
	return reads() - before - overhead
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
