package backend

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/searchtext"
)

// BenchmarkPGSaveFloor splits the PostgreSQL save's server work against
// langchaingo's two inserts (issue 17, item 6: "the server's work per
// save is no more than langchaingo's two inserts"), all with
// synchronous_commit=off, so that fsync does not hide it. Every side runs
// through the same client (database/sql on pgx, prepared statements) in
// alternating rounds on copies of one prefilled database (100 sessions of
// 100 turns), each in a schema of its own:
//
//   - langchaingo: its two auto-commit INSERTs into its table (a serial
//     key, no other index);
//   - today: the save statement on this release's tables and indexes;
//     then, each on a copy of its own, the same again (how far two
//     identical sides differ within a run) and the same without its read
//     of the session row before the upsert;
//   - compact keys: the turn index holding head rows only and the message
//     ID index the IDs an app gave (SQLite's layout, compactKeys): three
//     index entries less per 2-message save;
//   - + HOT: also no updated_at in the session listing indexes, and the
//     session table at fillfactor 80, so the session row's update is a
//     heap-only tuple: its index entries are not written again;
//   - + no search: also no GIN index;
//   - bare: the same statement on tables with their primary keys alone:
//     what the statement's shape costs with no index but the keys;
//   - then on the bare tables, parts of the statement taken off one at a
//     time: the messages as arrays instead of a JSON document, no check
//     of an erased session, no read of the row before the upsert;
//   - minimal: on the bare tables, the least statement that stores a turn
//     with its session's count atomically in one round trip (an UPDATE
//     of the count and an INSERT of the two rows, plain parameters), and
//     the same with the upsert that makes a new session's row;
//   - the guarantee ladder: the minimal statement on a copy of the bare
//     tables of its own, then with turnkeep's guarantees added one at a
//     time (the turn-head index of idempotent turn IDs, the listing
//     indexes, the GIN index with the rows' search text, the erased
//     check): the least save that keeps them all, its floor.
//
// With TURNKEEP_FLOOR_DURABLE=1 every side commits durably (the durable
// goal, ≤ 0.7x langchaingo): the same sides, each commit waiting for its
// WAL flush.
//
// The variants are layouts and statements measured, not built: they show
// which part of the server's work each index and each part of the
// statement is, and what is left with all of them gone. The timings
// include the client's work of sending each side's parameters (26 for
// the arrays, 16 for the save, 5 for minimal), not of making them. It reports each side's median time per save and its median
// ratio to langchaingo's over the rounds:
//
//	go test ./backend -run '^$' -bench BenchmarkPGSaveFloor -benchtime 1x -v
func BenchmarkPGSaveFloor(b *testing.B) {
	const (
		sessions, turns = 100, 100
		rounds, round   = 9, 300
	)
	if os.Getenv(dbtest.EnvPostgres) == "" {
		b.Skipf("set %s", dbtest.EnvPostgres)
	}
	ctx := context.Background()
	baseURL := dbtest.PostgresURL(b)
	be, _ := newEnvURL(b, baseURL)
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%03d", i)
	}
	for t := range turns {
		for _, id := range ids {
			if err := storeTurn(ctx, be, id, driver.Turn{User: fmt.Sprint("how do I rotate the keys ", t), Agent: "open the settings, create a key, deploy it, revoke the old one"}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := be.Search(ctx, "", driver.SearchQuery{Text: "rotate"}); err != nil {
		b.Fatal(err)
	}
	base := floorSchema(b, baseURL)
	admin := floorOpen(b, baseURL)
	defs := floorIndexes(b, admin, base)
	if !slices.ContainsFunc(defs, func(d string) bool { return strings.Contains(d, "USING gin") }) {
		b.Fatalf("no GIN index in %s: %v", base, defs)
	}
	saveText := oneStatementSave(be).String()
	nullIDs := regexp.MustCompile(`"id":"[^"]*"`)

	// A side's args are made before its round is timed (the save's client
	// work, driver.Prepare and the JSON rows, is not the server's), and its
	// save sends them.
	type side struct {
		name string
		db   *sql.DB
		args func(session string) []any
		save func(*sql.Stmt, []any) error
		stmt *sql.Stmt
		// stmtText is the statement stmt prepared.
		stmtText string
	}
	argsOf := func(compact bool) func(string) []any {
		return func(session string) []any {
			args := saveArgs(b, session, driver.NewTurnID())
			if compact { // derived IDs stored NULL, as compactKeys stores them
				i := len(args) - 2
				args[i] = nullIDs.ReplaceAllString(args[i].(string), `"id":null`)
			}
			return args
		}
	}
	query := func(st *sql.Stmt, args []any) error {
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		return rows.Close()
	}
	// layout copies the base schema's tables into the schema of url, with
	// the indexes keep returns (nil: drop it), and the session table at
	// fillfactor ff.
	layout := func(url string, ff int, keep func(def string) string) *sql.DB {
		db := floorOpen(b, url)
		schema := floorSchema(b, url)
		for _, t := range []string{SessionsTable, MessagesTable, ErasedTable} {
			floorExec(b, db, fmt.Sprintf(`CREATE TABLE %s.%s (LIKE %s.%s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`, schema, t, base, t))
		}
		floorExec(b, db, fmt.Sprintf(`ALTER TABLE %s.%s SET (fillfactor = %d)`, schema, SessionsTable, ff))
		for _, t := range []string{SessionsTable, MessagesTable, ErasedTable} {
			floorExec(b, db, fmt.Sprintf(`INSERT INTO %s.%s SELECT * FROM %s.%s`, schema, t, base, t))
		}
		for _, def := range defs {
			if def = keep(def); def != "" {
				floorExec(b, db, strings.ReplaceAll(def, " ON "+base+".", " ON "+schema+"."))
			}
		}
		floorExec(b, db, `ANALYZE`)
		return db
	}
	keys := func(def string) bool { return strings.Contains(def, "_pkey ") }
	compact := func(def string) string {
		switch {
		case strings.Contains(def, "_turn_idx "):
			return def + " WHERE (pos = 0)"
		case strings.Contains(def, "_msg_idx "):
			return def + " WHERE (msg_id IS NOT NULL)"
		}
		return def
	}
	hot := func(def string) string {
		def = compact(def)
		if strings.Contains(def, "ON "+base+"."+SessionsTable+" ") {
			def = strings.Replace(def, ", updated_at", "", 1)
		}
		return def
	}
	var sides []*side
	add := func(name string, db *sql.DB, text string, args func(string) []any, save func(*sql.Stmt, []any) error) *side {
		st, err := db.PrepareContext(ctx, text)
		if err != nil {
			b.Fatalf("%s: prepare: %v", name, err)
		}
		b.Cleanup(func() { st.Close() })
		sides = append(sides, &side{name: name, db: db, args: args, save: save, stmt: st, stmtText: text})
		return sides[len(sides)-1]
	}
	// langchaingo's table, prefilled with the same number of rows.
	lcDB := floorOpen(b, dbtest.PostgresURL(b))
	floorExec(b, lcDB, `CREATE TABLE langchaingo_messages (id SERIAL PRIMARY KEY, session_id TEXT NOT NULL, data JSONB NOT NULL, type TEXT NOT NULL, created_at TIMESTAMP DEFAULT now())`)
	floorExec(b, lcDB, fmt.Sprintf(`INSERT INTO langchaingo_messages (session_id, data, type)
SELECT 's' || lpad((i %% %d)::text, 3, '0'), to_jsonb('a message of about the same size as the saved ones'::text), CASE WHEN i %% 2 = 0 THEN 'human' ELSE 'ai' END
FROM generate_series(1, %d) i`, sessions, 2*sessions*turns))
	floorExec(b, lcDB, `ANALYZE langchaingo_messages`)
	add("langchaingo", lcDB, `INSERT INTO langchaingo_messages (session_id, data, type) VALUES ($1, $2, $3)`, func(session string) []any {
		return []any{session, `"how do I rotate the keys"`, `"open the settings, create a key, deploy it, revoke the old one"`}
	}, func(st *sql.Stmt, args []any) error {
		if _, err := st.ExecContext(ctx, args[0], args[1], "human"); err != nil {
			return err
		}
		_, err := st.ExecContext(ctx, args[0], args[2], "ai")
		return err
	})
	add("today", layout(dbtest.PostgresURL(b), 100, func(d string) string { return d }), saveText, argsOf(false), query)
	// Two controls on copies of today's layout: the same statement again,
	// which shows how far two identical sides differ within a run, and
	// the statement without its read of the session row before the
	// upsert (the erasure check under a race, see postgresStore.prepare).
	add("today, again", layout(dbtest.PostgresURL(b), 100, func(d string) string { return d }), saveText, argsOf(false), query)
	noReadToday := strings.Replace(saveText, `SELECT created_at FROM `+SessionsTable+` WHERE id = $1`,
		`SELECT CAST(NULL AS TIMESTAMPTZ) AS created_at WHERE CAST($1 AS TEXT) IS NOT NULL`, 1)
	add("today, no read", layout(dbtest.PostgresURL(b), 100, func(d string) string { return d }), noReadToday, argsOf(false), query)
	if noReadToday == saveText {
		b.Fatal("the read of the session row was not found: the statement changed")
	}
	today := len(sides) // the sides before run today's statement on today's layout
	add("compact keys", layout(dbtest.PostgresURL(b), 100, compact), saveText, argsOf(true), query)
	add("+ HOT", layout(dbtest.PostgresURL(b), 80, hot), saveText, argsOf(true), query)
	add("+ no search", layout(dbtest.PostgresURL(b), 80, func(d string) string {
		if strings.Contains(d, "USING gin") {
			return ""
		}
		return hot(d)
	}), saveText, argsOf(true), query)
	keysOnly := func(def string) string {
		if keys(def) {
			return def
		}
		return ""
	}
	bare := add("bare", layout(dbtest.PostgresURL(b), 80, keysOnly), saveText, argsOf(true), query).db
	// The save statement's parts, taken off one at a time on the bare
	// layout: its messages as arrays instead of a JSON document, then no
	// check of an erased session, then no read of the row before (the
	// check of a session deleted under the save).
	arraysText := strings.Replace(saveText, `json_to_recordset(CAST($15 AS JSON)) AS u(pos INT, id TEXT, role TEXT, content TEXT, name TEXT,
		tool_calls TEXT, tool_call_id TEXT, parts TEXT, meta TEXT, tokens BIGINT, search TEXT)`,
		`unnest(CAST($15 AS INT[]), CAST($17 AS TEXT[]), CAST($18 AS TEXT[]), CAST($19 AS TEXT[]), CAST($20 AS TEXT[]), CAST($21 AS TEXT[]),
		CAST($22 AS TEXT[]), CAST($23 AS TEXT[]), CAST($24 AS TEXT[]), CAST($25 AS BIGINT[]), CAST($26 AS TEXT[]))
		AS u(pos, id, role, content, name, tool_calls, tool_call_id, parts, meta, tokens, search)`, 1)
	noErased := strings.Replace(arraysText, `WHERE NOT EXISTS (SELECT 1 FROM `+ErasedTable+` e WHERE e.id = $8 AND (e.done = 0 OR e.erased_at > CAST($9 AS TIMESTAMPTZ)))`,
		`WHERE CAST($8 AS TEXT) IS NOT NULL AND CAST($9 AS TIMESTAMPTZ) IS NOT NULL`, 1)
	noRead := strings.Replace(noErased, `SELECT created_at FROM `+SessionsTable+` WHERE id = $1`,
		`SELECT CAST(NULL AS TIMESTAMPTZ) AS created_at WHERE CAST($1 AS TEXT) IS NOT NULL`, 1)
	for _, t := range []string{arraysText, noErased, noRead} {
		if t == saveText || t == arraysText && t == noErased || t == noErased && t == noRead {
			b.Fatal("a part of the save statement was not found: the statement changed")
		}
	}
	arraysOf := func(session string) []any {
		args := argsOf(true)(session)
		var rows []struct {
			Pos        int32
			ID         *string
			Role       *string
			Content    *string
			Name       *string
			ToolCalls  *string `json:"tool_calls"`
			ToolCallID *string `json:"tool_call_id"`
			Parts      *string
			Meta       *string
			Search     *string
			Tokens     int64
		}
		if err := json.Unmarshal([]byte(args[14].(string)), &rows); err != nil {
			b.Fatal(err)
		}
		var pos []int32
		var tokens []int64
		cols := make([][]*string, 10)
		for _, r := range rows {
			pos, tokens = append(pos, r.Pos), append(tokens, r.Tokens)
			for i, v := range []*string{r.ID, r.Role, r.Content, r.Name, r.ToolCalls, r.ToolCallID, r.Parts, r.Meta, r.Search} {
				cols[i] = append(cols[i], v)
			}
		}
		args[14] = pos
		for _, c := range cols[:9] {
			args = append(args, c)
		}
		args = slices.Insert(args, 24, any(tokens))
		return args
	}
	add("bare, arrays", bare, arraysText, arraysOf, query)
	add("+ no erased", bare, noErased, arraysOf, query)
	add("+ no read", bare, noRead, arraysOf, query)

	// minimal: the least statement that stores a turn atomically with its
	// session's count in one round trip, on the bare layout: the session
	// row's update and the two rows' insert, plain parameters, no JSON,
	// no check of an erased or vanished session, no search text.
	minimal := add("minimal", bare, `WITH s AS (
	UPDATE `+SessionsTable+` SET turn_count = turn_count + 1, version = version + 1, updated_at = $2 WHERE id = $1 RETURNING turn_count
)
INSERT INTO `+MessagesTable+` (session_id, seq, pos, turn_id, role, content, tokens, tokens_before, created_at)
SELECT $1, s.turn_count, v.pos, $3, v.role, v.content, 0, 0, $2 FROM s, (VALUES (0, 'user', CAST($4 AS TEXT)), (1, 'assistant', CAST($5 AS TEXT))) v(pos, role, content)`,
		func(session string) []any {
			return []any{session, time.Now(), driver.NewTurnID(), "how do I rotate the keys", "open the settings, create a key, deploy it, revoke the old one"}
		}, func(st *sql.Stmt, args []any) error {
			_, err := st.ExecContext(ctx, args...)
			return err
		})
	// minimal, upsert: the same with the session row's upsert, which
	// makes a new session's row, instead of the update.
	add("min. upsert", bare, `WITH s AS (
	INSERT INTO `+SessionsTable+` (id, tenant, turn_count, version, tokens, counted, created_at, updated_at) VALUES ($1, '', 1, 1, 0, 1, $2, $2)
	ON CONFLICT (id) DO UPDATE SET turn_count = `+SessionsTable+`.turn_count + 1, version = `+SessionsTable+`.version + 1, updated_at = excluded.updated_at
	RETURNING turn_count
)
INSERT INTO `+MessagesTable+` (session_id, seq, pos, turn_id, role, content, tokens, tokens_before, created_at)
SELECT $1, s.turn_count, v.pos, $3, v.role, v.content, 0, 0, $2 FROM s, (VALUES (0, 'user', CAST($4 AS TEXT)), (1, 'assistant', CAST($5 AS TEXT))) v(pos, role, content)`,
		minimal.args, minimal.save)

	// The guarantee ladder: the minimal statement on layouts that add
	// turnkeep's guarantees one at a time (the statement itself is the
	// same, so what each rung adds is its index):
	//   - + turn IDs: the turn-head index (session_id, turn_id) WHERE
	//     pos = 0, unique, so that a held turn ID stores nothing;
	//   - + listing: the session listing indexes (tenant, updated_at, id)
	//     and the owner's, which keyset listing reads;
	//   - + search: the GIN index, the rows carrying their search text.
	turnHead := func(def string) string {
		if strings.Contains(def, "_turn_idx ") {
			return compact(def)
		}
		if keys(def) {
			return def
		}
		return ""
	}
	listing := func(def string) string {
		if strings.Contains(def, "ON "+base+"."+SessionsTable+" ") {
			return def
		}
		return turnHead(def)
	}
	// The ladder's floor: the minimal statement on a copy of the bare
	// layout of its own, as every rung is (each copy has a connection of
	// its own; the bare copy's sides share one, which measured 0.1–0.3x
	// faster than a copy of the same tables).
	add("min., own copy", layout(dbtest.PostgresURL(b), 80, keysOnly), minimal.stmtText, minimal.args, minimal.save)
	add("+ turn IDs", layout(dbtest.PostgresURL(b), 80, turnHead), minimal.stmtText, minimal.args, minimal.save)
	add("+ listing", layout(dbtest.PostgresURL(b), 80, listing), minimal.stmtText, minimal.args, minimal.save)
	userSearch, agentSearch := searchtext.Text("how do I rotate the keys"), searchtext.Text("open the settings, create a key, deploy it, revoke the old one")
	withSearch := func(def string) string {
		if strings.Contains(def, "USING gin") {
			return def
		}
		return listing(def)
	}
	searchRung := add("+ search", layout(dbtest.PostgresURL(b), 80, withSearch), strings.Replace(strings.Replace(minimal.stmtText, "created_at)", "created_at, search_text)", 1),
		"v.content, 0, 0, $2 FROM s, (VALUES (0, 'user', CAST($4 AS TEXT)), (1, 'assistant', CAST($5 AS TEXT))) v(pos, role, content)",
		"v.content, 0, 0, $2, v.search FROM s, (VALUES (0, 'user', CAST($4 AS TEXT), CAST($6 AS TEXT)), (1, 'assistant', CAST($5 AS TEXT), CAST($7 AS TEXT))) v(pos, role, content, search)", 1),
		func(session string) []any { return append(minimal.args(session), userSearch, agentSearch) }, minimal.save)
	if !strings.Contains(searchRung.stmtText, "v.search") {
		b.Fatal("the minimal statement changed: + search does not insert the search text")
	}
	// + erasure: the save keeps DeleteUser's promise: no session
	// DeleteUser marked is written (the erased table's check in the
	// update). An UPDATE cannot make again a row deleted while it waited
	// for the row's lock, so it needs no read of the row before; today's
	// upsert, which makes a new session's row in the same statement, does
	// (see postgresStore.prepare), and costs that read more than this.
	add("+ erasure", layout(dbtest.PostgresURL(b), 80, withSearch), `WITH s AS (
	UPDATE `+SessionsTable+` SET turn_count = turn_count + 1, version = version + 1, updated_at = $2
	WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM `+ErasedTable+` e WHERE e.id = $8 AND (e.done = 0 OR e.erased_at > CAST($9 AS TIMESTAMPTZ)))
	RETURNING turn_count
)
INSERT INTO `+MessagesTable+` (session_id, seq, pos, turn_id, role, content, tokens, tokens_before, created_at, search_text)
SELECT $1, s.turn_count, v.pos, $3, v.role, v.content, 0, 0, $2, v.search
FROM s, (VALUES (0, 'user', CAST($4 AS TEXT), CAST($6 AS TEXT)), (1, 'assistant', CAST($5 AS TEXT), CAST($7 AS TEXT))) v(pos, role, content, search)`,
		func(session string) []any {
			return append(searchRung.args(session), erasedDigest(session), time.Now())
		}, minimal.save)

	var times, ratios [][]float64
	for b.Loop() {
		times, ratios = dbtest.Rounds(rounds, len(sides), func(i, r int) float64 {
			s := sides[i]
			args := make([][]any, round)
			for n := range args {
				args[n] = s.args(ids[n%len(ids)])
			}
			start := time.Now()
			for n := range round {
				if err := s.save(s.stmt, args[n]); err != nil {
					b.Fatalf("%s: %v", s.name, err)
				}
			}
			return float64(time.Since(start).Microseconds()) / round
		})
	}
	names := make([]string, len(sides))
	for i, s := range sides {
		names[i] = s.name
	}
	out := dbtest.ReportRounds(b, names, times, ratios, func(i int) string {
		if i < 1 || i >= today+4 { // the save statement on each layout
			return ""
		}
		return "WAL per save: " + floorWAL(b, sides[i].db, sides[i].stmtText, ids[0], i >= today, nullIDs)
	})
	b.Logf("medians of %d rounds:%s", rounds, out)
}

// floorDurable names the environment variable that makes
// BenchmarkPGSaveFloor's commits durable: set to 1, every side's commit
// waits for its WAL flush (the server's synchronous_commit), as in the
// durable goal ("SaveTurn ≤ 0.7x langchaingo's PostgreSQL history with
// durable commits").
const floorDurable = "TURNKEEP_FLOOR_DURABLE"

// floorOpen opens url with synchronous_commit=off, unless floorDurable is
// set to 1.
func floorOpen(tb testing.TB, raw string) *sql.DB {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	if os.Getenv(floorDurable) != "1" {
		q := u.Query()
		q.Set("synchronous_commit", "off")
		u.RawQuery = q.Encode()
	}
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	tb.Cleanup(func() { db.Close() })
	return db
}

// floorSchema is the schema dbtest.PostgresURL put in url's search_path.
func floorSchema(tb testing.TB, raw string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	s := u.Query().Get("search_path")
	if s == "" {
		tb.Fatalf("no search_path in %s", raw)
	}
	return s
}

// floorIndexes returns the definitions of every index on the backend's
// tables in schema.
func floorIndexes(tb testing.TB, db *sql.DB, schema string) []string {
	tb.Helper()
	rows, err := db.Query(`SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename IN ($2, $3, $4) ORDER BY indexname`, schema, SessionsTable, MessagesTable, ErasedTable)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var defs []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			tb.Fatal(err)
		}
		defs = append(defs, d)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return defs
}

func floorExec(tb testing.TB, db *sql.DB, q string) {
	tb.Helper()
	if _, err := db.Exec(q); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
}

// floorWAL is the WAL records and bytes of one save on db (leastWAL).
func floorWAL(tb testing.TB, db *sql.DB, saveText, session string, compact bool, nullIDs *regexp.Regexp) string {
	tb.Helper()
	records, bytes := leastWAL(tb, func() []byte {
		args := saveArgs(tb, session, driver.NewTurnID())
		if compact {
			i := len(args) - 2
			args[i] = nullIDs.ReplaceAllString(args[i].(string), `"id":null`)
		}
		tx, err := db.Begin()
		if err != nil {
			tb.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		var plan []byte
		if err := tx.QueryRow("EXPLAIN (ANALYZE, WAL, FORMAT JSON) "+saveText, args...).Scan(&plan); err != nil {
			tb.Fatal(err)
		}
		return plan
	})
	return fmt.Sprintf("%d records, %d bytes", records, bytes)
}
