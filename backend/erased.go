package backend

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

// ErasedTable is the table of sessions DeleteUser deleted (ErasedRow).
const ErasedTable = "turnkeep_erased"

// erasedKeep is how long a session DeleteUser deleted stays in ErasedTable:
// a save under way longer than this when the session was deleted is no
// longer refused. The next DeleteUser or Expire of the tenant removes rows
// older than this, done or not.
const erasedKeep = time.Hour

// ErasedRow is a session DeleteUser deleted: a save that reaches the
// database while that DeleteUser runs, or after it but having begun
// before it returned, is refused with driver.ErrSessionDeleted rather
// than starting a new, unowned session with the erased user's words. A
// save begun after DeleteUser returned starts a new session as any first
// save does. The row is written, not done, in the transaction that
// deletes the session, and made done, with the time DeleteUser ended, as
// its last step; a DeleteUser cut off leaves its rows not done (refusing
// saves) until it is run again. The row holds SHA-256 digests of the
// session's key and of its owner (erasedDigest), never text nor an ID in
// the clear: what DeleteUser erased stays unreadable. Times are the servers' clocks: across servers "before"
// holds to within their skew.
type ErasedRow struct {
	bun.BaseModel `bun:"table:turnkeep_erased"`

	ID       string    `bun:"id,pk,type:varchar(320)"` // the digest of the session's key
	Tenant   string    `bun:"tenant,notnull,type:varchar(64)"`
	UserID   string    `bun:"user_id,notnull,type:varchar(255)"` // the digest of the owner DeleteUser deleted it for
	Done     int16     `bun:"done,notnull,default:0"`            // 1 once that DeleteUser returned
	ErasedAt time.Time `bun:"erased_at,notnull"`                 // when it was deleted; once done, when DeleteUser ended
}

// erasedDigest is the form in which ErasedTable holds a session key or an
// owner: the hex SHA-256 of s, so that the table can be probed by key but
// shows nobody what was erased.
func erasedDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// erasedCheck is the condition, for an INSERT ... SELECT of a session
// row, that no DeleteUser of session ? runs or ended after the time ? a
// save began.
func (b *DataFlowBackend) erasedCheck() string {
	return `NOT EXISTS (SELECT 1 FROM ` + ErasedTable + ` e WHERE e.id = ? AND (e.done = 0 OR e.erased_at > ` + b.cast("?", "TIMESTAMPTZ") + `))`
}

// cast is CAST(expr AS typ) on PostgreSQL, whose INSERT ... SELECT needs
// the parameters' types, and expr on SQLite, whose CAST would change the
// stored form of a time.
func (b *DataFlowBackend) cast(expr, typ string) string { return b.store.cast(expr, typ) }

// erasedSince reports whether a DeleteUser of the session runs, or ended
// after begun.
func (b *DataFlowBackend) erasedSince(ctx context.Context, key string, begun time.Time) (bool, error) {
	st := b.stmt("erased/since", func() *dataflow.Stmt {
		return b.db.NewReadStmt(`SELECT COUNT(*) FROM `+ErasedTable+` WHERE id = ? AND (done = 0 OR erased_at > ?)`, b.erased)
	})
	rows, err := st.Query(ctx, erasedDigest(key), begun)
	if err != nil {
		return false, err
	}
	var n int
	if err := scanOne(rows, &n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// erasedSinceTx is erasedSince within tx.
func (b *DataFlowBackend) erasedSinceTx(ctx context.Context, tx *dataflow.Tx, key string, begun time.Time) (bool, error) {
	st := b.stmt("erased/since-tx", func() *dataflow.Stmt {
		return b.db.NewStmt(`SELECT COUNT(*) FROM `+ErasedTable+` WHERE id = ? AND tenant = ? AND (done = 0 OR erased_at > ?)`, b.erased)
	})
	rows, err := st.QueryTx(ctx, tx, erasedDigest(key), tenantOf(key), begun)
	if err != nil {
		return false, err
	}
	var n int
	if err := scanOne(rows, &n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// markErasedTx records keys as being deleted by a DeleteUser of user, in
// the transaction that deletes them, so that a save waiting for their
// rows finds the mark.
func (b *DataFlowBackend) markErasedTx(ctx context.Context, tx *dataflow.Tx, tenant, user string, keys []string) error {
	name := fmt.Sprintf("erased/mark/%d", len(keys))
	st := b.stmt(name, func() *dataflow.Stmt {
		return b.db.NewStmt(b.form(name, `INSERT INTO `+ErasedTable+` (id, tenant, user_id, done, erased_at) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, 0, ?), ", len(keys)), ", ")+`
ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, done = 0, erased_at = excluded.erased_at`), b.erased)
	})
	at := now()
	args := make([]any, 0, 4*len(keys))
	for _, k := range keys {
		args = append(args, erasedDigest(k), tenant, erasedDigest(user), at)
	}
	_, err := st.ExecTx(ctx, tx, args...)
	return err
}

// erasedSettle is how far past its last step's start DeleteUser dates its
// end, and waits for before it returns: a save begun before it returned is
// then begun before that date too, however long the last step took to
// commit (up to this).
const erasedSettle = 5 * time.Millisecond

// finishErased makes the marks of the tenant's sessions deleted for user
// done, as DeleteUser's last step (also those of an earlier run that was
// cut off), dated erasedSettle from now, and waits for that time.
func (b *DataFlowBackend) finishErased(ctx context.Context, tenant, user string) error {
	st := b.stmt("erased/finish", func() *dataflow.Stmt {
		return b.db.NewStmt(`UPDATE `+ErasedTable+` SET done = 1, erased_at = ? WHERE tenant = ? AND user_id = ? AND done = 0`, b.erased)
	})
	var end time.Time
	err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		end = now().Add(erasedSettle) // under SQLite's write lock: no save runs until the commit
		_, err := st.ExecTx(ctx, tx, end, tenant, erasedDigest(user))
		return err
	}, b.erased)
	if err != nil {
		return err
	}
	t := time.NewTimer(time.Until(end))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pruneErased removes the tenant's marks older than erasedKeep.
func (b *DataFlowBackend) pruneErased(ctx context.Context, tenant string) error {
	st := b.stmt("erased/prune", func() *dataflow.Stmt {
		return b.db.NewStmt(`DELETE FROM `+ErasedTable+` WHERE tenant = ? AND erased_at < ?`, b.erased)
	})
	_, err := st.Exec(ctx, tenant, now().Add(-erasedKeep))
	return err
}

// newTurnTx counts a new turn of tokens tokens into the session key's row,
// creating it, in tx: the one session-row step of a save, a replace and
// an import (saveSession). It returns the turn's sequence, the session's
// version and token total after it. It is driver.ErrSessionDeleted, naming the session, when a
// DeleteUser of the session ran or ended after begun (ErasedRow).
func (b *DataFlowBackend) newTurnTx(ctx context.Context, tx *dataflow.Tx, key string, tokens int64, at, begun time.Time) (seq, version, total int64, err error) {
	rows, err := b.saveSession.QueryTx(ctx, tx, key, tenantOf(key), firstVersion(), tokens, at, at, erasedDigest(key), begun)
	if err != nil {
		return 0, 0, 0, err
	}
	switch err := scanOne(rows, &seq, &version, &total); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, 0, 0, fmt.Errorf("%s: %w", sessionName(key), bare{driver.ErrSessionDeleted})
	case err != nil:
		return 0, 0, 0, err
	}
	return seq, version, total, nil
}
