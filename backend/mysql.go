package backend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
	"github.com/turnkeep/turnkeep/migrate"
)

// mysqlStore is the backend's MySQL family (MariaDB 10.11, Galera, MySQL
// 8): a save is one round trip, one text of several statements (the
// driver's multiStatements, with its interpolateParams binding every
// value: our code concatenates none) that begins, writes and commits a
// transaction; a second round trip, a ROLLBACK, follows only when a
// statement of it failed. The search index is the message rows'
// search_text, matched word by word with LIKE (see searchStmt).
type mysqlStore struct {
	b *DataFlowBackend

	saveMu    sync.Mutex
	saveTexts map[saveTextKey]string // the save's text by number of messages and guards; protected by saveMu
	// noTxGuard is set once the server has answered that it has no
	// @@in_transaction (MySQL 8): the save's writes are then unguarded
	// (see saveText), as nothing aborts a transaction between statements
	// there.
	noTxGuard bool // protected by saveMu
}

func init() {
	registerStore(sqlcore.MySQL.Name(), func(b *DataFlowBackend) store {
		return &mysqlStore{b: b, saveTexts: make(map[saveTextKey]string)}
	})
}

// cast is expr: the driver binds every value into the text as a literal
// of its type, and MySQL converts a literal to a column's type itself.
func (s *mysqlStore) cast(expr, _ string) string { return expr }
func (s *mysqlStore) rowLock() string            { return " FOR UPDATE" }
func (s *mysqlStore) skipLocked() string         { return " FOR UPDATE SKIP LOCKED" }
func (s *mysqlStore) greatest() string           { return "GREATEST" }
func (s *mysqlStore) indexInRows() bool          { return true }
func (s *mysqlStore) holeyReads() bool           { return true }
func (s *mysqlStore) prepare()                   {}

// chainQuery is a chain read on MySQL. MariaDB bounds a range of a key
// only by constants: the session row s, one row of constants, bounds the
// session's own rows; a bound lo that is a subquery (a budget window's)
// is computed first, in the same text (one round trip, the rows are its
// last result), by a statement of its own into @tk_lo, its parameters
// bound to user variables (the last, the session key, @tk_key) (after @tk_th, the session's tokens minus the
// budget, the budget read's third parameter): the session row s is then
// read as constants, and the session's own rows are a range of the
// primary key (session_id, seq), as before forks. The rows of the other
// chain rows c follow after UNION ALL: MariaDB cannot bound a key's
// second part by a value of an earlier table of the join, so an
// ancestor's rows are read by its session_id and filtered to the range
// (a fork's load on MySQL reads the stored part of each ancestor its
// window reaches; a session that is no fork reads its window alone).
func (s *mysqlStore) chainQuery(ctes, lo, hi, cols, cond string) string {
	signed := func(q string) string { return strings.ReplaceAll(q, " AS BIGINT)", " AS SIGNED)") }
	ctes, lo, hi = signed(ctes), signed(lo), signed(hi)
	var set strings.Builder
	if strings.Contains(lo, "SELECT") {
		s.bindVars(&set, &ctes)
		if strings.Contains(lo, "@tk_th") {
			set.WriteString("SET @tk_th = (SELECT tokens FROM " + SessionsTable + " WHERE id = @tk_key) - @tk_p3;\n")
		}
		set.WriteString("SET @tk_lo = (" + ctes + "\nSELECT " + lo + " FROM h);\n")
		lo = "@tk_lo"
	}
	return set.String() + ctes + `,
s AS (SELECT h.id, h.turn_count, h.version, ` + lo + ` AS lo, ` + hi + ` AS hi FROM h LIMIT 1)
` + cols + `
FROM s LEFT JOIN ` + MessagesTable + ` m ON m.session_id = s.id AND m.seq > s.lo AND m.seq <= s.hi
UNION ALL
` + cols + `
FROM s JOIN c ON c.id <> s.id JOIN ` + MessagesTable + ` m ON ` + cond
}

// bindVars writes to set the statement binding the parameters of ctes to
// user variables, in order (the last, the session key, @tk_key), and
// makes ctes read them.
func (s *mysqlStore) bindVars(set *strings.Builder, ctes *string) {
	n := strings.Count(*ctes, "?")
	set.WriteString("SET ")
	for i := range n {
		v := fmt.Sprintf("@tk_p%d", i+1)
		if i == n-1 {
			v = "@tk_key"
		}
		if i > 0 {
			set.WriteString(", ")
		}
		set.WriteString(v + " = ?")
		*ctes = strings.Replace(*ctes, "?", v, 1)
	}
	set.WriteString(";\n")
}

// budgetLo is the bound of a budget window read through the budget index
// (session_id, tokens_before, seq): per chain row, the first entry at
// tokens_before >= @tk_th, one index seek, which counts when it is within
// the row's range (an ancestor's entries past the fork point are its own
// later turns); the oldest such turn, minus one, or the turn before the
// newest when none is found, and no earlier than the turn limit's bound.
// The session's own seek is bounded by constants (@tk_key, @tk_th: see
// chainQuery), so that it is a range, not a read of the session's entries
// from its first.
func (s *mysqlStore) budgetLo() string {
	first := func(id, th string) string {
		return `(SELECT x.seq FROM ` + MessagesTable + ` x WHERE x.session_id = ` + id + ` AND x.tokens_before >= ` + th + ` ORDER BY x.tokens_before, x.seq LIMIT 1)`
	}
	own := first("@tk_key", "@tk_th")
	up := `(SELECT MIN(CASE WHEN ` + first("c.id", "@tk_th") + ` <= c.hi THEN ` + first("c.id", "@tk_th") + ` END) FROM c WHERE c.id <> h.id)`
	return `GREATEST(h.t, COALESCE(LEAST(COALESCE(` + own + `, ` + up + `), COALESCE(` + up + `, ` + own + `)), h.turn_count) - 1)`
}

// form is the MySQL text of the shared statements written with ON
// CONFLICT or RETURNING, which MySQL (MariaDB's UPDATE) lacks (see
// statementForms). Each takes the shared statement's arguments in the
// same order. Where the shared statement returns a row, the form is a
// text of several statements (one round trip) whose last one returns
// it: a SELECT of values the write captured in user variables, or of the
// row it wrote (FOR UPDATE: the newest version, which the write locked),
// upgradeIndexSQL is none: MySQL's search reads the rows' search_text,
// and no release before this one wrote MySQL.
func (s *mysqlStore) upgradeIndexSQL() string { return "" }

// moveEntries does nothing: the row holds its search_text.
func (s *mysqlStore) moveEntries(context.Context, migrate.UpgradeTx, string, int64, int32, int32) error {
	return nil
}

// searchIndexMissing returns nothing: MySQL's search reads the messages'
// search_text, with no index of its own.
func (s *mysqlStore) searchIndexMissing(context.Context) ([]string, error) { return nil, nil }

// conditioned on ROW_COUNT(), the previous statement's count.
func (s *mysqlStore) form(name, query string) string {
	switch name {
	case "lockSession":
		return `INSERT INTO ` + SessionsTable + ` (id, tenant, turn_count, version, tokens, counted, created_at, updated_at) VALUES (?, ?, 0, 0, 0, 1, ?, ?)
ON DUPLICATE KEY UPDATE turn_count = turn_count`
	case "saveSession":
		return `INSERT INTO ` + SessionsTable + ` (id, tenant, turn_count, version, tokens, counted, created_at, updated_at)
SELECT (@tk_id := ?), ?, 1, ?, ?, 1, ?, ? FROM DUAL WHERE ` + s.b.erasedCheck() + `
ON DUPLICATE KEY UPDATE turn_count = turn_count + 1, version = version + 1, tokens = tokens + VALUES(tokens), updated_at = VALUES(updated_at);
SELECT turn_count, version, tokens FROM ` + SessionsTable + ` WHERE id = @tk_id AND ROW_COUNT() > 0 FOR UPDATE`
	case "bumpSession":
		return `UPDATE ` + SessionsTable + ` SET version = (@tk_v := version + 1), tokens = tokens + ?, updated_at = ?, turn_count = (@tk_n := turn_count) WHERE id = ?;
SELECT @tk_n, @tk_v FROM DUAL WHERE ROW_COUNT() > 0`
	case "claim":
		return `UPDATE ` + SessionsTable + ` SET user_id = ?, updated_at = ? WHERE id = ? AND user_id = '';
SELECT 'claimed' FROM DUAL WHERE ROW_COUNT() > 0`
	case "create":
		// The condition is read on the row as it was, before the first
		// assignment changes it, into @tk_ok; a new row sets nothing, so
		// it starts true.
		return `SET @tk_ok = 1;
INSERT INTO ` + SessionsTable + ` (id, tenant, user_id, title, metadata, turn_count, version, tokens, counted, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, 0, ?, 0, 1, ?, ?)
ON DUPLICATE KEY UPDATE
	user_id = IF((@tk_ok := (user_id = VALUES(user_id) AND user_id <> '') OR (user_id = '' AND turn_count = 0)), VALUES(user_id), user_id),
	title = IF(@tk_ok, VALUES(title), title), metadata = IF(@tk_ok, VALUES(metadata), metadata), updated_at = IF(@tk_ok, VALUES(updated_at), updated_at);
SELECT 'created' FROM DUAL WHERE @tk_ok`
	case "import/head":
		return `INSERT INTO ` + SessionsTable + ` (id, tenant, user_id, title, metadata, turn_count, version, tokens, counted, created_at, updated_at)
VALUES ((@tk_id := ?), ?, ?, ?, ?, 0, ?, 0, 1, ?, ?)
ON DUPLICATE KEY UPDATE turn_count = turn_count;
SELECT user_id, turn_count FROM ` + SessionsTable + ` WHERE id = @tk_id FOR UPDATE`
	case "summary/lease":
		// The lease changes only where it expired: each assignment reads
		// the row's lease_until as it was (lease_owner's comes first and
		// lease_until's reads its own old value). The row is returned
		// when the lease is the caller's now (owner and until as given).
		return `INSERT INTO ` + SummariesTable + ` (id, text, turns, tokens, updated_at, lease_owner, lease_until)
SELECT (@tk_id := ?), '', 0, 0, ?, (@tk_owner := ?), (@tk_until := ?) FROM DUAL
WHERE EXISTS (SELECT 1 FROM ` + SessionsTable + ` WHERE id = ?) AND (@tk_now := ?) IS NOT NULL
ON DUPLICATE KEY UPDATE lease_owner = IF(lease_until < @tk_now, VALUES(lease_owner), lease_owner),
	lease_until = IF(lease_until < @tk_now, VALUES(lease_until), lease_until);
SELECT text, turns, tokens, ` + s.b.db.TimeColumn("updated_at") + ` FROM ` + SummariesTable + `
WHERE id = @tk_id AND lease_owner = @tk_owner AND lease_until = @tk_until`
	case "fork/insert":
		return strings.Replace(strings.Replace(query, "INSERT INTO", "INSERT IGNORE INTO", 1), " ON CONFLICT (id) DO NOTHING", "", 1)
	case "summary/put":
		return `INSERT INTO ` + SummariesTable + ` (id, text, turns, tokens, updated_at, lease_owner, lease_until)
SELECT ?, ?, ?, ?, ?, '', 0 FROM DUAL WHERE EXISTS (SELECT 1 FROM ` + SessionsTable + ` WHERE id = ?)
ON DUPLICATE KEY UPDATE text = VALUES(text), turns = VALUES(turns), tokens = VALUES(tokens),
	updated_at = VALUES(updated_at), lease_owner = '', lease_until = 0`
	}
	switch {
	case strings.HasPrefix(name, "erased/mark/"):
		if i := strings.Index(query, "\nON CONFLICT"); i >= 0 {
			return query[:i] + "\nON DUPLICATE KEY UPDATE user_id = VALUES(user_id), done = 0, erased_at = VALUES(erased_at)"
		}
	}
	return strings.ReplaceAll(query, " AS BIGINT)", " AS SIGNED)") // MySQL's CAST has no BIGINT
}

// insertRowsQuery is the insert of n message rows that skips, as ON
// CONFLICT DO NOTHING does, an append's rows whose message ID (or place)
// the session holds, or a save's rows of a held turn, so that another
// turn's message ID is still an error. The rows are a derived table
// filtered by NOT EXISTS, so that RowsAffected counts only the rows
// stored: ON DUPLICATE KEY UPDATE would count a skipped row as found
// (the DSN's clientFoundRows), and INSERT IGNORE would also turn a value
// that does not fit into a warning.
func (s *mysqlStore) insertRowsQuery(n int, append bool) string {
	cols := strings.Split(messageColumns, ", ")
	var q strings.Builder
	q.WriteString(`INSERT INTO ` + MessagesTable + ` (` + messageColumns + `) SELECT u.* FROM (SELECT `)
	for i, c := range cols {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("? AS " + c)
	}
	row := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
	for range n - 1 {
		q.WriteString("\nUNION ALL SELECT " + row)
	}
	q.WriteString(`) u WHERE NOT EXISTS (SELECT 1 FROM ` + MessagesTable + ` x WHERE x.session_id = u.session_id AND `)
	if append {
		q.WriteString(`(x.msg_id = u.msg_id OR x.seq = u.seq AND x.pos = u.pos OR x.turn_id = u.turn_id AND x.pos = u.pos))`)
	} else {
		q.WriteString(`x.turn_id = u.turn_id AND x.pos = u.pos)`)
	}
	return q.String()
}

// msgIDConflict reports whether err is a violation of the message ID
// index: a message ID the session holds in another turn.
func (s *mysqlStore) msgIDConflict(err error) bool {
	return err != nil && dataflow.IsUniqueViolation(err, MessagesTable+"_msg_idx")
}

// lockSessionTx locks the session row first (SELECT … FOR UPDATE).
func (s *mysqlStore) lockSessionTx(ctx context.Context, tx *dataflow.Tx, sessionID, turnID string) error {
	return s.b.lockRowTx(ctx, tx, sessionID, turnID)
}

// appendNewest leaves every append to the transaction path.
func (s *mysqlStore) appendNewest(context.Context, string, string, []driver.PreparedMessage) (driver.Saved, bool, error) {
	return driver.Saved{}, false, nil
}

// mysqlSaveTries bounds the tries of a save that lost a deadlock or a
// Galera certification conflict (error 1213), or whose transaction Galera
// rolled back between two of its statements: the turn ID makes another
// try safe, as it stores nothing twice.
const mysqlSaveTries = 8

// mysqlUnknownSystemVariable is MySQL's error 1193, ER_UNKNOWN_SYSTEM_VARIABLE:
// the answer of a server without @@in_transaction.
const mysqlUnknownSystemVariable = 1193

// errRolledBack is a save whose transaction was rolled back under its
// text: the writes did not run or did not commit, and nothing is stored.
var errRolledBack = errors.New("save: the transaction was rolled back under it (Galera)")

// saveText returns the text of a save of n messages: one transaction,
// in statements the server runs in order, stopping at the first that
// fails (the caller then rolls back).
//
//  1. Whether the session holds the turn's ID: a plain read, which takes
//     no lock (a shared lock on the messages' gap here made two saves of
//     one session deadlock on their inserts). An ID committed after it
//     is caught by the turn index at 4.
//  2. The session row's upsert, unless the ID is held or DeleteUser
//     erased the session after the save began (ErasedRow): a new row
//     starts at a random version; a held one gets the next turn.
//  3. The row's new count, version and tokens, into user variables, only
//     when 2 wrote: its SELECT sets @tk_rc as it yields the row. Not
//     ROW_COUNT(): once the client has gone (a deadline, a killed
//     process) the server runs the text on, but ROW_COUNT() reads 0
//     after the upsert, and the text would commit the bump without the
//     messages.
//  4. The messages, numbered from 0, with the turn's sequence and the
//     tokens before it; none when 3 found nothing. A second save of the
//     same new ID at once waits for the session row's lock, then fails
//     here on the turn index: the caller reads that as "held".
//  5. COMMIT, then the variables, whether the session holds the turn at
//     the sequence 3 read, and the session's turn count: reading them
//     means the commit is done, and the fourth tells a commit from a
//     transaction rolled back under the text (below).
//
// Whether 2 wrote is set by the write itself (@tk_rc := 1 in the upsert's
// SELECT, or in the UPDATE's assignment), never read from ROW_COUNT(),
// which reads 0 once the client has gone: a save cut off by a deadline
// must not commit a session bump without its messages.
//
// A guarded save (Seq > 0, g) checks the count in step 2, under the row's
// lock: Seq 1 (guardFirst) is the upsert whose update path writes only on
// a row of no turns (@tk_ok, read on the row as it was), and a later Seq
// (guardLater) is an UPDATE of a row holding Seq-1 turns, so that no new
// row is made. When the check fails nothing is written, 3 finds nothing,
// and so does 4; the count read at 5 tells the conflict.
//
// A Galera node aborts a local transaction that conflicts with a write
// set replicated from another node (a brute-force abort) at once, even
// between two statements of one text; the rest of the text then runs
// outside any transaction, each statement committing on its own, and no
// error is returned (measured: 250 of 828 such texts, TestGaleraCluster).
// So every write is guarded by @@in_transaction (MariaDB; tx is "" on a
// server without it, which aborts nothing between statements), and the
// last SELECT checks that the turn is stored: a save whose writes were
// skipped or rolled back stores nothing and is tried again.
func (s *mysqlStore) saveText(n int, g guard) string {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	k := saveTextKey{n, g, s.noTxGuard}
	tx := " AND @@in_transaction = 1"
	if s.noTxGuard {
		tx = ""
	}
	if q, ok := s.saveTexts[k]; ok {
		return q
	}
	var q strings.Builder
	q.WriteString(`SET @tk_seq = NULL, @tk_ver = NULL, @tk_tok = NULL, @tk_rc = 0, @tk_ok = 1, @tk_key = ?;
START TRANSACTION;
SELECT COUNT(*) INTO @tk_known FROM ` + MessagesTable + ` WHERE session_id = ? AND turn_id = ? AND pos = 0;
`)
	switch g {
	case guardNone:
		q.WriteString(`INSERT INTO ` + SessionsTable + ` (id, tenant, turn_count, version, tokens, counted, created_at, updated_at)
SELECT ?, ?, (@tk_rc := 1), ?, ?, 1, ?, ? FROM DUAL WHERE @tk_known = 0` + tx + ` AND ` + s.b.erasedCheck() + `
ON DUPLICATE KEY UPDATE turn_count = turn_count + 1, version = version + 1, tokens = tokens + VALUES(tokens), updated_at = VALUES(updated_at);
`)
	case guardFirst:
		q.WriteString(`INSERT INTO ` + SessionsTable + ` (id, tenant, turn_count, version, tokens, counted, created_at, updated_at)
SELECT ?, ?, (@tk_rc := 1), ?, ?, 1, ?, ? FROM DUAL WHERE @tk_known = 0` + tx + ` AND ` + s.b.erasedCheck() + `
ON DUPLICATE KEY UPDATE turn_count = IF((@tk_ok := turn_count = 0), turn_count + 1, turn_count), version = IF(@tk_ok, version + 1, version),
	tokens = IF(@tk_ok, tokens + VALUES(tokens), tokens), updated_at = IF(@tk_ok, VALUES(updated_at), updated_at);
`)
	case guardLater:
		q.WriteString(`UPDATE ` + SessionsTable + ` SET turn_count = turn_count + (@tk_rc := 1), version = version + 1, tokens = tokens + ?, updated_at = ?
WHERE id = ? AND turn_count = ? AND @tk_known = 0` + tx + ` AND ` + s.b.erasedCheck() + `;
`)
	}
	q.WriteString(`SELECT turn_count, version, tokens INTO @tk_seq, @tk_ver, @tk_tok FROM ` + SessionsTable + ` WHERE id = ? AND @tk_rc > 0 AND @tk_ok` + tx + `;
INSERT INTO ` + MessagesTable + ` (` + messageColumns + `)
`)
	for i := range n {
		if i > 0 {
			q.WriteString("\nUNION ALL ")
		}
		q.WriteString(`SELECT ?, @tk_seq, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, @tk_tok - ?, ?, ?, ? FROM DUAL WHERE @tk_seq IS NOT NULL` + tx)
	}
	// The commit is conditional where the server has compound statements
	// (MariaDB): a text whose session bump went in without its messages
	// (seen when a killed client's text ran on: TestCrashSafety) is
	// rolled back, never committed.
	commit := `COMMIT;`
	if !s.noTxGuard {
		commit = `BEGIN NOT ATOMIC
	IF @tk_rc > 0 AND (@tk_seq IS NULL OR NOT EXISTS (SELECT 1 FROM ` + MessagesTable + ` WHERE session_id = @tk_key AND seq = @tk_seq)) THEN ROLLBACK; ELSE COMMIT; END IF;
END;`
	}
	q.WriteString(`;
` + commit + `
SELECT @tk_seq, @tk_ver, @tk_known, (SELECT COUNT(*) FROM ` + MessagesTable + ` WHERE session_id = ? AND turn_id = ? AND pos = 0 AND seq = @tk_seq),
	(SELECT turn_count FROM ` + SessionsTable + ` WHERE id = ?)`)
	s.saveTexts[k] = q.String()
	return s.saveTexts[k]
}

// saveTextKey names a save's text: its number of messages, its guard,
// and whether its writes go unguarded by @@in_transaction.
type saveTextKey struct {
	n    int
	g    guard
	noTx bool
}

// dropTxGuard makes the save's text unguarded from now on (the server has
// no @@in_transaction); it reports whether the text was guarded.
func (s *mysqlStore) dropTxGuard() bool {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	was := !s.noTxGuard
	s.noTxGuard = true
	return was
}

// mysqlSaveArgs are the arguments of saveText for the turn.
func mysqlSaveArgs(sessionID string, turn driver.PreparedTurn, metaArg any, tokens int64, at, begun time.Time) []any {
	t := &turn.Turn
	args := make([]any, 0, 15+16*len(turn.Encoded))
	args = append(args, sessionID, sessionID, t.ID)
	if guardOf(t.Seq) == guardLater {
		args = append(args, tokens, at, sessionID, int64(t.Seq-1), erasedDigest(sessionID), begun)
	} else {
		args = append(args, sessionID, tenantOf(sessionID), firstVersion(), tokens, at, at, erasedDigest(sessionID), begun)
	}
	args = append(args, sessionID)
	for i := range turn.Encoded {
		m := &turn.Encoded[i]
		var meta any
		if i == 0 {
			meta = metaArg
		}
		args = append(args, sessionID, int32(i), t.ID, m.ID, string(m.Role), m.Content, m.Name,
			jsonArg(m.ToolCallsJSON), m.ToolCallID, jsonArg(m.PartsJSON), jsonArg(m.MetadataJSON),
			int64(m.Tokens), tokens, meta, t.Timestamp, searchArg(m.Content))
	}
	return append(args, sessionID, t.ID, sessionID)
}

// save is Save on MySQL: one round trip (saveText), two when a statement
// fails and the transaction is rolled back, each try. A deadlock or a
// Galera certification conflict (1213) is tried again, up to
// mysqlSaveTries, with the same turn ID.
func (s *mysqlStore) save(ctx context.Context, sessionID string, turn driver.PreparedTurn, metaArg any, tokens int64, at time.Time, begun time.Time) (driver.Saved, error) {
	b := s.b
	for _, t := range []interface{ EnsureTable(context.Context) error }{b.sessions, b.messages, b.erased} {
		if err := t.EnsureTable(ctx); err != nil {
			return driver.Saved{}, err
		}
	}
	args := mysqlSaveArgs(sessionID, turn, metaArg, tokens, at, begun)
	var err error
	for try := 1; ; try++ {
		var seq, version sql.NullInt64
		var known, stored, count int64
		seq, version, known, stored, count, err = s.saveOnce(ctx, s.saveText(len(turn.Encoded), guardOf(turn.Seq)), args)
		switch {
		case err == nil && !seq.Valid && known > 0:
			return driver.Saved{}, nil // the session holds the turn's ID
		case err == nil && !seq.Valid:
			erased, err := b.erasedSince(ctx, sessionID, begun)
			if err != nil {
				return driver.Saved{}, err
			}
			if erased {
				return driver.Saved{}, fmt.Errorf("%s: %w", sessionName(sessionID), bare{driver.ErrSessionDeleted})
			}
			if turn.Seq > 0 && count != int64(turn.Seq-1) {
				return driver.Saved{}, errSeqConflict // the session is not at the turn's Seq
			}
			if try == mysqlSaveTries || ctx.Err() != nil {
				return driver.Saved{}, errNotSaved
			}
			continue // the writes were skipped: rolled back under the text
		case err == nil && stored == 0:
			err = errRolledBack // committed nothing: try again, below
		case err == nil:
			return driver.Saved{Stored: true, Seq: int(seq.Int64), Version: reported(version.Int64), Messages: len(turn.Encoded)}, nil
		case dataflow.IsUniqueViolation(err, MessagesTable+"_turn_idx"):
			return driver.Saved{}, nil // a concurrent save of the same ID won
		case dataflow.IsUniqueViolation(err, MessagesTable+"_msg_idx"):
			return driver.Saved{}, err // the caller tells which
		case sqlcore.IsMySQLErrno(err, mysqlUnknownSystemVariable) && s.dropTxGuard():
			try-- // rolled back whole: the same try again, unguarded
			continue
		}
		switch {
		case errors.Is(err, errRolledBack) && try == mysqlSaveTries:
			return driver.Saved{}, errNotSaved
		case (errors.Is(err, errRolledBack) || sqlcore.MySQLRetryable(err)) && try < mysqlSaveTries && ctx.Err() == nil:
			// Rolled back whole: nothing of the turn is stored.
			select {
			case <-ctx.Done():
				return driver.Saved{}, ctx.Err()
			case <-time.After(time.Duration(try)*time.Millisecond + rand.N(time.Duration(try)*time.Millisecond)):
			}
			continue
		}
		// A text sent and then cut off by the context or a lost
		// connection may have committed: ErrOutcomeUnknown. A retry with
		// the same turn ID stores nothing twice.
		return driver.Saved{}, b.writeOutcome(ctx, "save", err)
	}
}

// saveOnce runs the save's text on a connection of its own and reads its
// last result; after a failure it rolls the transaction back on that
// connection, or discards the connection, so that no open transaction
// goes back to the pool. Query hooks see the text and the ROLLBACK, each
// one statement and one round trip.
func (s *mysqlStore) saveOnce(ctx context.Context, query string, args []any) (seq, version sql.NullInt64, known, stored, count int64, err error) {
	conn, err := s.b.db.Bun().DB.Conn(ctx)
	if err != nil {
		return seq, version, 0, 0, 0, err
	}
	defer func() {
		if err == nil {
			conn.Close()
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sqlcore.RollbackTimeout)
		defer cancel()
		if _, rerr := s.b.db.ConnExecContext(rctx, conn, "ROLLBACK"); rerr != nil {
			sqlcore.Discard(conn)
			return
		}
		conn.Close()
	}()
	rows, err := s.b.db.ConnQueryContext(ctx, conn, query, args...)
	if err != nil {
		return seq, version, 0, 0, 0, err
	}
	defer rows.Close()
	found := false
	for {
		for rows.Next() {
			var n sql.NullInt64
			if err := rows.Scan(&seq, &version, &known, &stored, &n); err != nil {
				return seq, version, 0, 0, 0, err
			}
			found, count = true, n.Int64
		}
		if !rows.NextResultSet() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return seq, version, 0, 0, 0, err
	}
	if err := rows.Close(); err != nil {
		return seq, version, 0, 0, 0, err
	}
	if !found {
		return seq, version, 0, 0, 0, errors.New("save: no result (does the DSN set multiStatements=true?)")
	}
	return seq, version, known, stored, count, nil
}

// indexTx does nothing: the insert wrote each row's search_text.
func (s *mysqlStore) indexTx(context.Context, *dataflow.Tx, string, int64, int32, []driver.PreparedMessage) error {
	return nil
}

// unindexKeysTx does nothing: the entries go with the rows.
func (s *mysqlStore) unindexKeysTx(context.Context, *dataflow.Tx, []string) error { return nil }

// searchIndexName names the column searched: there is no index of its
// own (see searchStmt).
func (s *mysqlStore) searchIndexName() string { return MessagesTable + ".search_text" }

// searchIndexDDL is empty: search reads search_text as it is.
func (s *mysqlStore) searchIndexDDL() ([]string, migrate.Step) {
	return nil, migrate.Step{Kind: migrate.CreateIndex, Table: MessagesTable, Name: s.searchIndexName()}
}

// searchIndexExists is true: the column is part of the messages table.
func (s *mysqlStore) searchIndexExists(context.Context) (bool, error) { return true, nil }

func (s *mysqlStore) searchIndexFound(context.Context) error { return nil }

// searchStmt matches each term as a whole word of search_text (the words
// of driver.SearchText, one space apart, CJK as the other dialects split
// it) with LIKE: InnoDB's FULLTEXT cannot find CJK on MariaDB (no ngram
// parser) and its minimum token size is a server-wide setting. It reads
// the scope's rows (a session: its primary-key range; a tenant: its
// sessions by the tenant index, then their messages), so its cost grows
// with the scope, not with the database. Hits come in session and turn
// order, each scored 1.
func (s *mysqlStore) searchStmt(q driver.SearchQuery) *dataflow.Stmt {
	b := s.b
	terms, _ := driver.QueryTerms(q.Text) // Search checked them
	n := max(1, len(terms))
	name := fmt.Sprintf("search/%t/%t/%d", q.User != "", q.SessionID != "", n)
	return b.stmt(name, func() *dataflow.Stmt {
		where := `s.tenant = ?`
		if q.User != "" {
			where += ` AND s.user_id = ?`
		}
		if q.SessionID != "" {
			where += ` AND m.session_id = ? AND m.seq <= ?`
		}
		return b.db.NewReadStmt(`SELECT `+searchColumns+`, `+b.db.TimeColumn("m.created_at")+`, 1.0 AS score
FROM `+SessionsTable+` s JOIN `+MessagesTable+` m ON m.session_id = s.id
WHERE `+where+` AND m.search_text IS NOT NULL`+strings.Repeat(` AND CONCAT(' ', m.search_text, ' ') LIKE ? ESCAPE '\\'`, n)+`
ORDER BY m.session_id, m.seq, m.pos LIMIT ?`, b.sessions, b.messages)
	})
}

// searchArgs are the scope's arguments and a LIKE pattern per term.
func (s *mysqlStore) searchArgs(tenant string, terms []string, q driver.SearchQuery, through int64) []any {
	args := []any{tenant}
	if q.User != "" {
		args = append(args, q.User)
	}
	if q.SessionID != "" {
		args = append(args, driver.SessionKey(tenant, q.SessionID), through)
	}
	for _, t := range terms {
		args = append(args, mysqlWordPattern(t))
	}
	return args
}

// likeEscaper escapes LIKE's wildcards and its escape character.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// mysqlWordPattern is the LIKE pattern that matches a space-padded
// search_text holding term as a whole word.
func mysqlWordPattern(term string) string { return "% " + likeEscaper.Replace(term) + " %" }

// sizeQuery is the backend's tables' data and indexes as InnoDB reports
// them (an estimate the server updates with its statistics).
func (s *mysqlStore) sizeQuery() (string, []any) {
	return `SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) FROM information_schema.tables
WHERE table_schema = DATABASE() AND table_name IN (?, ?)`, []any{SessionsTable, MessagesTable}
}
