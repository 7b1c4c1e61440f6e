package backend

import (
	"context"
	"fmt"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

var _ driver.Replacer = (*DataFlowBackend)(nil)

// Replace makes turns the session's whole history in one transaction: the
// session row locked (inserted if need be, as Clear does), its messages
// and search entries deleted, its counts reset with a new version, and
// every turn stored as Save stores it. Owner, title and metadata are kept;
// the forks sharing its turns get copies of them first (detachTx), and a
// fork replaced holds its new turns alone (ForkOf stays, as provenance).
// A turn whose Seq is not 0 must have its position in turns (1 for the
// first), or nothing is written (driver.ErrInvalidTurn).
// Readers see the old history or the new one. It implements
// driver.Replacer.
func (b *DataFlowBackend) Replace(ctx context.Context, key string, turns []driver.PreparedTurn) (driver.Saved, error) {
	if err := b.check(key); err != nil {
		return driver.Saved{}, err
	}
	begun := now()
	for i := range turns {
		if !turns[i].Prepared() {
			p, err := driver.Prepare(turns[i].Turn, now(), 0, nil)
			if err != nil {
				return driver.Saved{}, fmt.Errorf("backend: %w", err)
			}
			turns[i] = p
		}
	}
	if err := checkPositions(turns); err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	index, err := b.indexed(ctx)
	if err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	reset := b.stmt("replace/reset", func() *dataflow.Stmt {
		return b.db.NewStmt(`UPDATE `+SessionsTable+` SET turn_count = 0, tokens = 0, counted = 1, version = version + 1, updated_at = ?, base = '', base_seq = 0 WHERE id = ?`, b.sessions)
	})
	sums, tables, err := b.erasing(ctx, b.sessions, b.messages, b.erased)
	if err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	var saved driver.Saved
	err = b.runTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		at := now()
		if _, err := b.lockSession.ExecTx(ctx, tx, key, tenantOf(key), at, at); err != nil {
			return err
		}
		if err := b.detachTx(ctx, tx, []string{key}, index); err != nil {
			return err
		}
		if err := b.store.unindexKeysTx(ctx, tx, []string{key}); err != nil {
			return err
		}
		if _, err := b.messages.WithTx(tx).BulkDelete(ctx, dataflow.Filter{"session_id": key}); err != nil {
			return err
		}
		if sums {
			if err := b.deleteSummaryTx(ctx, tx, key); err != nil {
				return err
			}
		}
		if _, err := reset.ExecTx(ctx, tx, at, key); err != nil {
			return err
		}
		saved = driver.Saved{Stored: true}
		for i := range turns {
			t := &turns[i]
			tokens := int64(t.Tokens())
			seq, version, total, err := b.newTurnTx(ctx, tx, key, tokens, at, begun)
			if err != nil {
				return err
			}
			var meta any
			if t.Metadata != nil {
				meta = string(t.Metadata)
			}
			args := b.rowArgs(nil, key, seq, 0, t.ID, t.Encoded, total-tokens, meta, t.Timestamp)
			if err := b.insert(ctx, tx, len(t.Encoded), args); err != nil {
				if err == errDuplicate {
					return fmt.Errorf("%w: turn id %q given twice", driver.ErrInvalidTurn, t.ID)
				}
				return err
			}
			if index {
				if err := b.store.indexTx(ctx, tx, key, seq, 0, t.Encoded); err != nil {
					return err
				}
			}
			saved.Seq, saved.Version, saved.Messages = int(seq), reported(version), saved.Messages+len(t.Encoded)
		}
		return nil
	}, tables...)
	if err != nil {
		if b.store.msgIDConflict(err) {
			return driver.Saved{}, fmt.Errorf("backend: %w: a message id is given twice", driver.ErrInvalidTurn)
		}
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	b.queued(ctx, key, saved.Messages)
	return saved, nil
}

// checkPositions refuses a replacement whose turn has a Seq other than 0
// and its position in turns: a history given with the positions it
// was loaded at must keep them.
func checkPositions(turns []driver.PreparedTurn) error {
	for i := range turns {
		if seq := turns[i].Seq; seq != 0 && seq != i+1 {
			return fmt.Errorf("%w: turn %d (%q) has Seq %d", driver.ErrInvalidTurn, i, turns[i].ID, seq)
		}
	}
	return nil
}
