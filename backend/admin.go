package backend

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/migrate"
)

// What an operator's tool (cmd/turnkeep) needs beyond driver.SessionStore:
// the backend's schema as migrate models, per-tenant counts and the size of
// the database.

// Models returns the models of the backend's tables, with the indexes
// NewDataFlowBackend registers, for migrate.Migrator's Check, Plan and
// Apply: a schema can be inspected or migrated by hand while the engine
// runs with dataflow.WithAutoMigrate(false). TestModelsMatchRegistered
// keeps them equal to what the engine migrates.
func (b *DataFlowBackend) Models() []migrate.Model {
	messages := migrate.Model{Value: (*MessageRow)(nil), WithoutRowID: true}
	messages.Indexes, messages.Dropped = b.messageIndexes() // as NewDataFlowBackend registers them
	return []migrate.Model{
		{Value: (*SessionRow)(nil), Dropped: []string{SessionsTable + "_user_idx"}, Indexes: []migrate.Index{
			{Name: ownerIdx, Columns: []string{"tenant", "user_id", "updated_at", "id"}, Where: ownerWhere},
			{Name: SessionsTable + "_tenant_idx", Columns: []string{"tenant", "updated_at", "id"}},
			{Name: forkIdx, Columns: []string{"fork_of", "created_at", "id"}, Where: forkWhere},
			{Name: baseIdx, Columns: []string{"base"}, Where: baseWhere},
		}},
		messages,
		{Value: (*ErasedRow)(nil), Indexes: []migrate.Index{
			{Name: ErasedTable + "_tenant_idx", Columns: []string{"tenant", "erased_at"}},
		}},
	}
}

// A TenantCount is what one tenant holds.
type TenantCount struct {
	Tenant   string // "" is the default tenant
	Sessions int64
	Turns    int64
	Messages int64
}

// TenantCounts returns, for every tenant with at least one session, its
// sessions, turns and messages, ordered by tenant. It is two statements,
// each a scan of its table: an operator's query, not one for a hot path.
func (b *DataFlowBackend) TenantCounts(ctx context.Context) ([]TenantCount, error) {
	if err := b.Err(); err != nil {
		return nil, err
	}
	sessions := b.stmt("admin/sessions", func() *dataflow.Stmt {
		return b.db.NewReadStmt(`SELECT tenant, COUNT(*), COALESCE(SUM(turn_count), 0) FROM `+SessionsTable+
			` GROUP BY tenant ORDER BY tenant`, b.sessions)
	})
	messages := b.stmt("admin/messages", func() *dataflow.Stmt {
		return b.db.NewReadStmt(`SELECT s.tenant, COUNT(*) FROM `+MessagesTable+` m JOIN `+SessionsTable+
			` s ON s.id = m.session_id GROUP BY s.tenant`, b.sessions, b.messages)
	})
	var out []TenantCount
	at := map[string]int{}
	err := eachRow(ctx, sessions, func(rows *sql.Rows) error {
		var c TenantCount
		if err := rows.Scan(&c.Tenant, &c.Sessions, &c.Turns); err != nil {
			return err
		}
		at[c.Tenant] = len(out)
		out = append(out, c)
		return nil
	})
	if err == nil {
		err = eachRow(ctx, messages, func(rows *sql.Rows) error {
			var (
				tenant string
				n      int64
			)
			if err := rows.Scan(&tenant, &n); err != nil {
				return err
			}
			if i, ok := at[tenant]; ok { // a session made between the statements has no entry yet
				out[i].Messages = n
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("backend: tenant counts: %w", err)
	}
	return out, nil
}

// eachRow runs st and calls fn on each row it returns.
func eachRow(ctx context.Context, st *dataflow.Stmt, fn func(*sql.Rows) error) error {
	rows, err := st.Query(ctx)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

// DatabaseSize returns bytes on disk: on SQLite the whole database
// (page_count × page_size, without the WAL), on PostgreSQL the backend's
// two tables with their indexes and TOAST (pg_total_relation_size), 0 for
// a table that does not exist. It needs no table and changes nothing.
func (b *DataFlowBackend) DatabaseSize(ctx context.Context) (int64, error) {
	if err := b.Err(); err != nil {
		return 0, err
	}
	q, args := b.store.sizeQuery()
	rows, err := b.db.QueryContext(ctx, b.db.Rebind(q), args...)
	if err != nil {
		return 0, fmt.Errorf("backend: database size: %w", err)
	}
	var n int64
	if err := scanOne(rows, &n); err != nil {
		return 0, fmt.Errorf("backend: database size: %w", err)
	}
	return n, nil
}

// EnsureSearchIndex creates the full-text search index if it is missing,
// as the first save or search does (and, like them, only when the DB may
// change the schema), so that a schema migrated by hand is complete before
// the first message is stored: messages saved while a SQLite database has
// no index are never indexed. It does nothing under WithSearchIndex(false).
func (b *DataFlowBackend) EnsureSearchIndex(ctx context.Context) error {
	if err := b.Err(); err != nil {
		return err
	}
	if err := b.ensureSearch(ctx); err != nil {
		return fmt.Errorf("backend: search index: %w", err)
	}
	return nil
}

// SearchIndexPlan returns what EnsureSearchIndex would do, changing
// nothing: a plan whose Table names the search index (SearchTable, an FTS5
// table, on SQLite; the GIN index turnkeep_messages_search_idx on
// PostgreSQL), whose Exists reports whether the index exists, and whose
// steps create it: none when it exists or under WithSearchIndex(false).
func (b *DataFlowBackend) SearchIndexPlan(ctx context.Context) (*migrate.Plan, error) {
	if err := b.Err(); err != nil {
		return nil, err
	}
	p := &migrate.Plan{Table: b.store.searchIndexName()}
	exists, err := b.store.searchIndexExists(ctx)
	if err != nil {
		return nil, fmt.Errorf("backend: search index plan: %w", err)
	}
	p.Exists = exists
	if b.noSearch {
		return p, nil
	}
	ddl, step := b.store.searchIndexDDL()
	if exists {
		ddl = nil
	}
	missing, err := b.store.searchIndexMissing(ctx)
	if err != nil {
		return nil, fmt.Errorf("backend: search index plan: %w", err)
	}
	ddl = append(ddl, missing...)
	for _, stmt := range ddl {
		step.SQL = stmt
		p.Steps = append(p.Steps, step)
	}
	return p, nil
}
