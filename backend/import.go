package backend

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

// Import stores an import in one transaction (driver.SessionStore's
// contract): the session row is inserted or locked first and its owner
// checked, then each turn next yields is looked up by ID (one indexed
// read) and, when the session does not hold it, stored as Save stores it.
// A held turn is compared with the file's; a message ID another turn holds
// is found by the unique index, whose violation aborts the transaction.
// So duplicates, within the file or against the session, are found by the
// database inside the transaction, and nothing but the current turn is
// held in memory. A turn whose Seq is not 0 must be the session's turn Seq
// once imported (where it is held, or where it lands), or the import
// stores nothing (driver.ErrInvalidImport). It implements
// driver.SessionStore.
func (b *DataFlowBackend) Import(ctx context.Context, key string, s driver.SessionInfo, next func() (driver.PreparedTurn, error)) error {
	return b.importSession(ctx, key, s, nil, next)
}

var _ driver.SummaryImporter = (*DataFlowBackend)(nil)

// ImportSummary is Import with the session's summary stored in the same
// transaction, after the last turn (importSummaryTx): two statements
// more. It implements driver.SummaryImporter.
func (b *DataFlowBackend) ImportSummary(ctx context.Context, key string, s driver.SessionInfo, sum driver.Summary, next func() (driver.PreparedTurn, error)) error {
	return b.importSession(ctx, key, s, &sum, next)
}

// importFault, when set (by tests), is called in an import's transaction
// after its summary is written; an error from it aborts the import.
var importFault func(key string) error

// importSession stores an import, and sum, when not nil, in its
// transaction.
func (b *DataFlowBackend) importSession(ctx context.Context, key string, s driver.SessionInfo, sum *driver.Summary, next func() (driver.PreparedTurn, error)) error {
	if err := b.check(key); err != nil {
		return err
	}
	meta, err := encodeMetadata(s.Metadata)
	if err != nil {
		return err
	}
	index, err := b.indexed(ctx)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	head := b.stmt("import/head", func() *dataflow.Stmt {
		return b.db.NewStmt(b.form("import/head", `INSERT INTO `+SessionsTable+` (id, tenant, user_id, title, metadata, turn_count, version, tokens, counted, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, 0, ?, 0, 1, ?, ?)
ON CONFLICT (id) DO UPDATE SET turn_count = `+SessionsTable+`.turn_count
RETURNING user_id, turn_count`), b.sessions)
	})
	apply := b.stmt("import/apply", func() *dataflow.Stmt {
		return b.db.NewStmt(`UPDATE `+SessionsTable+` SET user_id = ?, title = ?, metadata = ?, updated_at = ? WHERE id = ?`, b.sessions)
	})
	// The turn's rows: a range of the primary key at its sequence, found
	// by its head row (pos 0, which a compact turn index alone holds).
	held := b.stmt("import/held", func() *dataflow.Stmt {
		return b.db.NewStmt(`SELECT seq, pos, msg_id, role, content, name, tool_calls, tool_call_id, parts, msg_metadata FROM `+MessagesTable+`
WHERE session_id = ? AND seq = (SELECT h.seq FROM `+MessagesTable+` h WHERE h.session_id = ? AND h.turn_id = ? AND h.pos = 0)
ORDER BY pos`, b.messages)
	})
	begun := now() // a DeleteUser of the session after this refuses the import (ErasedRow)
	if err := b.upgraded(ctx, nil); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	tables := []dataflow.Readier{b.sessions, b.messages, b.erased}
	if sum != nil {
		tables = append(tables, b.summary.table)
	}
	err = b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		at := now()
		created := at
		if !s.CreatedAt.IsZero() {
			created = s.CreatedAt.UTC().Truncate(time.Microsecond)
		}
		rows, err := head.QueryTx(ctx, tx, key, tenantOf(key), s.User, s.Title, jsonArg(meta), firstVersion(), created, at)
		if err != nil {
			return err
		}
		var (
			owner string
			count int64
		)
		if err := scanOne(rows, &owner, &count); err != nil {
			return err
		}
		if owner != s.User && (owner != "" || count > 0) {
			return refusedOwner(key, owner)
		}
		// The title and metadata are the erased user's words too: a
		// session DeleteUser deleted since the import began is not made
		// again with them (ErasedRow). Read after the row's lock, in a
		// statement of its own, so that on PostgreSQL it sees a deletion
		// the upsert waited for.
		switch erased, err := b.erasedSinceTx(ctx, tx, key, begun); {
		case err != nil:
			return err
		case erased:
			return driver.ErrSessionDeleted
		}
		if s.User != "" || s.Title != "" || meta != nil {
			if _, err := apply.ExecTx(ctx, tx, s.User, s.Title, jsonArg(meta), at, key); err != nil {
				return err
			}
		}
		for {
			t, err := next()
			if err == io.EOF {
				if sum != nil {
					return b.importSummaryTx(ctx, tx, key, *sum)
				}
				return nil
			}
			if err != nil {
				return err
			}
			if !t.Prepared() {
				if t, err = driver.Prepare(t.Turn, at, 0, nil); err != nil {
					return err
				}
			}
			stored, pos, err := b.heldTurnTx(ctx, tx, held, key, t.ID)
			if err != nil {
				return err
			}
			if stored != nil && t.Seq != 0 && int64(t.Seq) != pos {
				return fmt.Errorf("%s turn %q: %w: Seq %d, but the session holds it as turn %d", sessionName(key), t.ID, bare{driver.ErrInvalidImport}, t.Seq, pos)
			}
			if stored != nil {
				same, err := sameMessages(stored, t.Encoded)
				if err != nil {
					return err
				}
				if !same {
					return fmt.Errorf("%s turn %q: %w: the session holds other messages under its id", sessionName(key), t.ID, bare{driver.ErrInvalidImport})
				}
				continue // held as it is: no change
			}
			if err := b.importTurnTx(ctx, tx, key, t, at, begun, index); err != nil {
				if b.store.msgIDConflict(err) {
					return fmt.Errorf("%s turn %q: %w: a message id of it is held by another turn", sessionName(key), t.ID, bare{driver.ErrInvalidImport})
				}
				return err
			}
		}
	}, tables...)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	b.queued(ctx, key, searchCatchUpAfter) // SQLite: a bulk write, indexed now
	return nil
}

// importSummaryTx stores sum as the session's summary, in an import's
// transaction (the session row locked), when the session holds at least
// sum.Turns turns and its stored summary covers fewer: one read of the
// session row with its summary's coverage, then the summary's upsert and
// the session's new version.
func (b *DataFlowBackend) importSummaryTx(ctx context.Context, tx *dataflow.Tx, key string, sum driver.Summary) error {
	cover := b.stmt("import/summary", func() *dataflow.Stmt {
		return b.db.NewStmt(`SELECT s.turn_count, COALESCE((SELECT x.turns FROM `+SummariesTable+` x WHERE x.id = s.id), 0) FROM `+SessionsTable+` s WHERE s.id = ?`, b.sessions, b.summary.table)
	})
	rows, err := cover.QueryTx(ctx, tx, key)
	if err != nil {
		return err
	}
	var count, covered int64
	if err := scanOne(rows, &count, &covered); err != nil {
		return err
	}
	if int64(sum.Turns) > count || covered >= int64(sum.Turns) {
		return nil
	}
	if _, err := b.summary.put.ExecTx(ctx, tx, key, sum.Text, sum.Turns, sum.Tokens, sum.UpdatedAt.UTC().Truncate(time.Microsecond), key); err != nil {
		return err
	}
	if _, err := b.summary.bump.ExecTx(ctx, tx, key); err != nil {
		return err
	}
	if importFault != nil {
		return importFault(key)
	}
	return nil
}

// importTurnTx stores t as the session's newest turn, as Save does, within
// an import's transaction. Like a save, it is refused with
// driver.ErrSessionDeleted when a DeleteUser of the session ran or ended
// after the import began (ErasedRow).
func (b *DataFlowBackend) importTurnTx(ctx context.Context, tx *dataflow.Tx, key string, t driver.PreparedTurn, at, begun time.Time, index bool) error {
	tokens := int64(t.Tokens())
	seq, _, total, err := b.newTurnTx(ctx, tx, key, tokens, at, begun)
	if err != nil {
		return err
	}
	if t.Seq != 0 && int64(t.Seq) != seq {
		return fmt.Errorf("%s turn %q: %w: Seq %d, but it would be turn %d", sessionName(key), t.ID, bare{driver.ErrInvalidImport}, t.Seq, seq)
	}
	var meta any
	if t.Metadata != nil {
		meta = string(t.Metadata)
	}
	args := b.rowArgs(nil, key, seq, 0, t.ID, t.Encoded, total-tokens, meta, t.Timestamp)
	if err := b.insert(ctx, tx, len(t.Encoded), args); err != nil {
		if err == errDuplicate { // the turn was looked up as not held, under the session row's lock
			return fmt.Errorf("turn %s stored meanwhile", t.ID)
		}
		return err
	}
	if index {
		return b.store.indexTx(ctx, tx, key, seq, 0, t.Encoded)
	}
	return nil
}

// heldTurnTx returns the messages the session holds under turnID, nil for
// none, decoded for comparison: without token counts; and the turn's
// position.
func (b *DataFlowBackend) heldTurnTx(ctx context.Context, tx *dataflow.Tx, st *dataflow.Stmt, key, turnID string) ([]driver.Message, int64, error) {
	rows, err := st.QueryTx(ctx, tx, key, key, turnID)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var (
		out []driver.Message
		seq int64
	)
	for rows.Next() {
		var (
			pos                   int32
			id                    sql.NullString
			m                     driver.Message
			role                  string
			calls, parts, msgMeta sql.NullString
		)
		if err := rows.Scan(&seq, &pos, &id, &role, &m.Content, &m.Name, &calls, &m.ToolCallID, &parts, &msgMeta); err != nil {
			return nil, 0, err
		}
		m.ID, m.Role = messageID(id.String, id.Valid, turnID, pos), driver.Role(role)
		if err := driver.DecodeMessage(&m, nullBytes(calls), nullBytes(parts), nullBytes(msgMeta)); err != nil {
			return nil, 0, err
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	return out, seq, rows.Close()
}

func nullBytes(s sql.NullString) []byte {
	if !s.Valid {
		return nil
	}
	return []byte(s.String)
}

// sameMessages reports whether held, as heldTurnTx reads them, are msgs:
// the same IDs, roles, content, names, tool calls, parts and metadata, in
// order. Token counts are not compared: a counter may count differently.
func sameMessages(held []driver.Message, msgs []driver.PreparedMessage) (bool, error) {
	if len(held) != len(msgs) {
		return false, nil
	}
	for i := range msgs {
		m := msgs[i].Message
		if err := driver.DecodeMessage(&m, msgs[i].ToolCallsJSON, msgs[i].PartsJSON, msgs[i].MetadataJSON); err != nil {
			return false, err
		}
		m.Tokens = 0
		h := held[i]
		h.Tokens = 0
		if !reflect.DeepEqual(h, m) {
			return false, nil
		}
	}
	return true, nil
}
