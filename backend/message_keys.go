package backend

import (
	"strconv"
	"strings"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/migrate"
)

// The indexes of the message table that find a turn by its ID and a
// message by its ID. A store with compact keys (compactKeys) keeps the
// partial forms instead of the whole ones.
const (
	turnIdx     = MessagesTable + "_turn_idx"     // (session_id, turn_id, pos), every row
	msgIdx      = MessagesTable + "_msg_idx"      // (session_id, msg_id), every row
	turnHeadIdx = MessagesTable + "_turnhead_idx" // (session_id, turn_id, pos) of a turn's head row only
	msgIDIdx    = MessagesTable + "_msgid_idx"    // (session_id, msg_id) of the IDs stored, not derived
	budgetIdx   = MessagesTable + "_budget_idx"

	// turnHeadWhere holds a turn's head row: its first message. A query
	// that finds a turn by ID names it (pos = 0) to be served by the
	// partial index.
	turnHeadWhere = "pos = 0"
	// msgIDWhere holds the rows whose message ID is stored.
	msgIDWhere = "msg_id IS NOT NULL"
)

// compactKeys is a store whose message indexes hold only the entries a
// lookup needs, where each entry a save writes costs pages (SQLite's WAL):
//
//   - the turn index holds a turn's head row alone (turnHeadIdx: one entry
//     per turn, not per message);
//   - a message whose ID is the one its place derives
//     (driver.DerivedMessageID of its turn and position) is stored with a
//     NULL msg_id and read back as that ID, so the message ID index
//     (msgIDIdx) holds only the IDs an app gave.
//
// A message ID is then held in one of two forms, and a lookup by ID checks
// both (see DataFlowBackend.rowArgs): stored as it is, or derived from a
// row at its place whose msg_id is NULL. Rows an earlier release wrote
// keep their stored IDs, derived or not: both forms read alike.
type compactKeys interface{ compactKeys() }

// messageIndexes returns the indexes of the message table for b's store,
// and those it no longer has (dropped where a database of an earlier
// release holds them). NewDataFlowBackend registers them and Models
// reports them.
func (b *DataFlowBackend) messageIndexes() (indexes []migrate.Index, dropped []string) {
	if _, ok := b.store.(compactKeys); ok {
		indexes = []migrate.Index{
			{Name: turnHeadIdx, Columns: []string{"session_id", "turn_id", "pos"}, Unique: true, Where: turnHeadWhere},
			{Name: msgIDIdx, Columns: []string{"session_id", "msg_id"}, Unique: true, Where: msgIDWhere},
		}
		dropped = []string{turnIdx, msgIdx}
	} else {
		indexes = []migrate.Index{
			{Name: turnIdx, Columns: []string{"session_id", "turn_id", "pos"}, Unique: true},
			{Name: msgIdx, Columns: []string{"session_id", "msg_id"}, Unique: true},
		}
	}
	// The budget index finds a budget window's oldest turn in one seek,
	// unless the store bounds the window its own way (budgetBounder): then
	// an index every save writes is dropped.
	if _, ok := b.store.(budgetBounder); ok {
		dropped = append(dropped, budgetIdx)
	} else {
		indexes = append(indexes, migrate.Index{Name: budgetIdx, Columns: []string{"session_id", "tokens_before", "seq"}})
	}
	return indexes, dropped
}

// indexOptions are the model options that register indexes and dropped.
func indexOptions(indexes []migrate.Index, dropped []string) []dataflow.ModelOption {
	var opts []dataflow.ModelOption
	for _, ix := range indexes {
		switch {
		case ix.Where != "" && ix.Unique:
			opts = append(opts, dataflow.WithPartialUniqueIndex(ix.Name, ix.Where, ix.Columns...))
		case ix.Where != "":
			opts = append(opts, dataflow.WithPartialIndex(ix.Name, ix.Where, ix.Columns...))
		case ix.Unique:
			opts = append(opts, dataflow.WithUniqueIndex(ix.Name, ix.Columns...))
		default:
			opts = append(opts, dataflow.WithIndex(ix.Name, ix.Columns...))
		}
	}
	for _, name := range dropped {
		opts = append(opts, dataflow.WithDroppedIndex(name))
	}
	return opts
}

// parseDerivedID returns the turn ID and position id derives from, when it
// has the form of driver.DerivedMessageID: a "/" and then a position in
// canonical decimal (no sign, no leading zero). The position is the last
// "/"'s suffix, so a turn ID holding "/" parses back as itself.
func parseDerivedID(id string) (turnID string, pos int, ok bool) {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return "", 0, false
	}
	s := id[i+1:]
	if s == "" || len(s) > 9 || s[0] == '0' && len(s) > 1 {
		return "", 0, false
	}
	for j := 0; j < len(s); j++ {
		if s[j] < '0' || s[j] > '9' {
			return "", 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return "", 0, false
	}
	return id[:i], n, true
}

// storedID returns the msg_id a message of ID id stored in turn turnID at
// pos takes: NULL (nil) where it is the ID its place derives and the store
// has compact keys, id otherwise. Where id is kept but has the form of
// another place's derived ID, lookTurn and lookPos are that place (nil
// otherwise): a write checks that no row there holds it in derived form.
func (b *DataFlowBackend) storedID(id, turnID string, pos int32) (stored, lookTurn, lookPos any) {
	if !b.compact {
		return id, nil, nil
	}
	t, p, ok := parseDerivedID(id)
	switch {
	case !ok:
		return id, nil, nil
	case t == turnID && p == int(pos):
		return nil, nil, nil
	}
	return id, t, int64(p)
}

// messageID is the ID of a message read from a row of turn turnID at pos
// whose msg_id is id: id, or the derived ID where it is NULL (compactKeys,
// or a row of a release before message IDs).
func messageID(id string, valid bool, turnID string, pos int32) string {
	if valid {
		return id
	}
	return driver.DerivedMessageID(turnID, int(pos))
}
