package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

var copyCmd = &command{
	name: "copy",
	summary: "Copy every tenant, session, turn and message from one database to another (e.g. SQLite to PostgreSQL), " +
		"then verify that each tenant's sessions and messages number the same on both (exit 1 if not). " +
		"Idempotent and resumable: interrupted, run it again and nothing is lost or doubled (turns are saved by ID). " +
		"Copy from a database nothing writes to meanwhile. Token counts, IDs and turn times are kept; the " +
		"destination's tables are created if need be. Progress goes to stderr, the result to stdout.",
	example: "turnkeep copy --from sqlite:///chat.db \\\n    --to 'postgres://app@db:5432/chat?sslmode=disable'",
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.from, "from", "", "the source database `URL` (default --db, then $TURNKEEP_DB_URL)")
		fs.StringVar(&o.to, "to", "", "the destination database `URL` (required)")
		fs.IntVar(&o.workers, "workers", 4, "sessions copied at once")
	},
	run: runCopy,
}

// copyStats is what a copy did.
type copyStats struct {
	sync.Mutex // protects the counts
	sessions   int64
	skipped    int64 // sessions found complete at the destination
	turns      int64
}

func runCopy(ctx context.Context, a *app, o *options, _ []string) error {
	// The source is --from, or --db, which every command takes, or
	// $TURNKEEP_DB_URL; never a default destination.
	switch {
	case o.from != "" && o.db != "" && o.from != o.db:
		return usagef("turnkeep copy", "copy: --db and --from name different sources: give one")
	case o.from == "" && o.db != "":
		o.from = o.db
	case o.from == "":
		o.from = a.getenv("TURNKEEP_DB_URL")
	}
	switch {
	case o.from == "" || o.to == "":
		return usagef("turnkeep copy", "copy: --from (or --db, or $TURNKEEP_DB_URL) and --to are required")
	case o.from == o.to:
		return usagef("turnkeep copy", "copy: --from and --to name the same database")
	case o.workers < 1 || o.workers > 64:
		return usagef("turnkeep copy", "copy: --workers %d: want 1 to 64", o.workers)
	}
	src, err := open(ctx, o.from, "", readOnlySchema)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	defer src.Close()
	dst, err := open(ctx, o.to, "", migrateSchema)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	defer dst.Close()

	counts, err := src.b.TenantCounts(ctx)
	if err != nil {
		return dbErr(fmt.Errorf("--from: %w", err))
	}
	var total int64
	for _, c := range counts {
		total += c.Turns
	}
	// Progress to stderr: stdout is for the result, and a reader of it
	// that goes away early (| head) must not stop the copy.
	prog := newProgress(a.stderr, a.stderrTTY, "turns", total)
	var st copyStats
	err = copyAll(ctx, src, dst.b, counts, o.workers, prog, &st)
	prog.finish()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("copy interrupted after %s: run the same command again to resume", plural(st.turns, "turn"))
		}
		return err
	}
	return verifyCopy(ctx, a, o, src.b, dst.b, &st)
}

type copyJob struct {
	tenant string
	info   memory.SessionInfo
}

// copyAll lists the sessions of every tenant of counts and copies them,
// workers at a time.
func copyAll(ctx context.Context, src *store, dst *backend.DataFlowBackend, counts []backend.TenantCount, workers int, prog *progress, st *copyStats) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan copyJob)
	var wg sync.WaitGroup
	for range workers {
		c, err := newCopier(dst)
		if err != nil {
			return err
		}
		wg.Go(func() {
			defer c.mem.Close()
			for j := range jobs {
				if err := c.session(ctx, src.mem.ForTenant(j.tenant), j.tenant, j.info, prog, st); err != nil {
					cancel(err)
					return
				}
				if err := copySummary(ctx, src.b, dst, j.tenant, j.info.ID); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	listErr := func() error {
		defer close(jobs)
		for _, tc := range counts {
			m := src.mem.ForTenant(tc.Tenant)
			q := memory.SessionQuery{Limit: memory.MaxListLimit}
			for {
				p, err := m.ListSessions(ctx, q)
				if err != nil {
					return dbErr(fmt.Errorf("--from: %w", err))
				}
				for _, info := range p.Sessions {
					select {
					case jobs <- copyJob{tc.Tenant, info}:
					case <-ctx.Done():
						return context.Cause(ctx)
					}
				}
				if p.Next == "" {
					break
				}
				q.After = p.Next
			}
		}
		return nil
	}()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if listErr != nil {
		return listErr
	}
	return context.Cause(ctx)
}

// A copier writes sessions into the destination through a memory of its
// own, whose token counter returns the count each message had at the
// source, so counts (and so token windows) are kept whatever counter
// wrote them.
type copier struct {
	mem    *memory.PersistentBufferMemory
	tokens map[string]int // of the turn being saved, by message ID
}

func newCopier(dst *backend.DataFlowBackend) (*copier, error) {
	c := &copier{tokens: map[string]int{}}
	m, err := memory.NewPersistentBufferMemory(dst, memory.WithCacheTTL(0),
		memory.WithTokenCounter(memory.TokenCounterFunc(func(m memory.Message) int { return c.tokens[m.ID] })))
	if err != nil {
		return nil, err
	}
	c.mem = m
	return c, nil
}

// session copies one session: its owner, title, metadata and creation
// time, then its turns, oldest first. A session whose turn count and
// newest turn are already at the destination is skipped, so a resumed
// copy passes over what it finished at one read per side.
func (c *copier) session(ctx context.Context, from *memory.PersistentBufferMemory, tenant string, info memory.SessionInfo, prog *progress, st *copyStats) error {
	to := c.mem.ForTenant(tenant)
	done, err := copied(ctx, from, to, info)
	if err != nil {
		return err
	}
	if done {
		prog.add(int64(info.TurnCount))
		st.Lock()
		st.sessions++
		st.skipped++
		st.Unlock()
		return nil
	}
	err = to.CreateSession(ctx, memory.SessionInfo{ID: info.ID, User: info.User, Title: info.Title, Metadata: info.Metadata, CreatedAt: info.CreatedAt})
	if info.User == "" && errors.Is(err, memory.ErrSessionExists) {
		err = nil // an unowned session a copy cut off already made, turns and all: go on with its turns
	}
	if err != nil {
		return dbErr(fmt.Errorf("--to: session %q of tenant %q: %w", info.ID, tenant, err))
	}
	q := memory.HistoryQuery{Limit: 200}
	for {
		p, err := from.History(ctx, info.ID, q)
		if err != nil {
			return dbErr(fmt.Errorf("--from: session %q of tenant %q: %w", info.ID, tenant, err))
		}
		for _, t := range p.Turns {
			clear(c.tokens)
			for _, m := range t.Messages {
				c.tokens[m.ID] = m.Tokens
			}
			t.User, t.Agent = "", "" // the shorthand a load fills in; Messages hold the turn
			if err := to.SaveTurn(ctx, info.ID, t); err != nil {
				return dbErr(fmt.Errorf("--to: session %q of tenant %q, turn %s: %w", info.ID, tenant, t.ID, err))
			}
			prog.add(1)
			st.Lock()
			st.turns++
			st.Unlock()
		}
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	st.Lock()
	st.sessions++
	st.Unlock()
	return nil
}

// copySummary copies the session's summary (issue 20), when the source
// holds one the destination does not: after the turns, which it covers.
func copySummary(ctx context.Context, src, dst *backend.DataFlowBackend, tenant, id string) error {
	key := driver.SessionKey(tenant, id)
	q := driver.WindowQuery{MaxTurns: 1, Known: driver.UnknownVersion, Summary: true}
	from, _, err := src.Load(ctx, key, q)
	if err != nil {
		return dbErr(fmt.Errorf("--from: summary of session %q of tenant %q: %w", id, tenant, err))
	}
	if from.Summary == nil {
		return nil
	}
	to, _, err := dst.Load(ctx, key, q)
	if err != nil {
		return dbErr(fmt.Errorf("--to: summary of session %q of tenant %q: %w", id, tenant, err))
	}
	if to.Summary != nil && *to.Summary == *from.Summary || from.Summary.Turns > to.TurnCount {
		return nil
	}
	if err := dst.PutSummary(ctx, key, *from.Summary); err != nil {
		return dbErr(fmt.Errorf("--to: summary of session %q of tenant %q: %w", id, tenant, err))
	}
	return nil
}

// copied reports whether the destination holds the session whole: as
// many turns, and the same newest one.
func copied(ctx context.Context, from, to *memory.PersistentBufferMemory, info memory.SessionInfo) (bool, error) {
	have, err := to.SessionInfo(ctx, info.ID)
	if errors.Is(err, memory.ErrSessionNotFound) {
		return false, nil
	}
	if err != nil {
		return false, dbErr(fmt.Errorf("--to: %w", err))
	}
	if have.TurnCount != info.TurnCount || have.User != info.User {
		return false, nil
	}
	if info.TurnCount == 0 {
		return true, nil
	}
	newest := func(m *memory.PersistentBufferMemory) (string, error) {
		p, err := m.History(ctx, info.ID, memory.HistoryQuery{Limit: 1, NewestFirst: true})
		if err != nil || len(p.Turns) == 0 {
			return "", err
		}
		return p.Turns[0].ID, nil
	}
	a, err := newest(from)
	if err != nil {
		return false, dbErr(fmt.Errorf("--from: %w", err))
	}
	b, err := newest(to)
	if err != nil {
		return false, dbErr(fmt.Errorf("--to: %w", err))
	}
	return a == b, nil
}

type tenantCheck struct {
	Tenant      string `json:"tenant"`
	Sessions    int64  `json:"sessions"`
	Messages    int64  `json:"messages"`
	ToSessions  int64  `json:"to_sessions"`
	ToMessages  int64  `json:"to_messages"`
	CountsMatch bool   `json:"ok"`
}

// verifyCopy compares each source tenant's counts with the destination's.
func verifyCopy(ctx context.Context, a *app, o *options, src, dst *backend.DataFlowBackend, st *copyStats) error {
	from, err := src.TenantCounts(ctx)
	if err != nil {
		return dbErr(fmt.Errorf("--from: %w", err))
	}
	to, err := dst.TenantCounts(ctx)
	if err != nil {
		return dbErr(fmt.Errorf("--to: %w", err))
	}
	have := map[string]backend.TenantCount{}
	for _, c := range to {
		have[c.Tenant] = c
	}
	var checks []tenantCheck
	bad := 0
	for _, c := range from {
		d := have[c.Tenant]
		ok := c.Sessions == d.Sessions && c.Messages == d.Messages
		if !ok {
			bad++
		}
		checks = append(checks, tenantCheck{c.Tenant, c.Sessions, c.Messages, d.Sessions, d.Messages, ok})
	}
	if o.json {
		if checks == nil {
			checks = []tenantCheck{}
		}
		if err := writeJSON(a.stdout, map[string]any{"sessions": st.sessions, "skipped": st.skipped, "turns": st.turns, "tenants": checks, "ok": bad == 0}); err != nil {
			return err
		}
	} else {
		printChecks(a.stdout, checks)
		fmt.Fprintf(a.stdout, "copied %s (%d already complete), %s saved (a turn the destination held is stored once)\n", plural(st.sessions, "session"), st.skipped, plural(st.turns, "turn"))
	}
	if bad > 0 {
		return fmt.Errorf("copy: counts differ in %s: see the table; the destination was written to meanwhile, or holds other sessions under the same IDs", plural(bad, "tenant"))
	}
	return nil
}

func printChecks(w io.Writer, checks []tenantCheck) {
	t := newTable(w, "TENANT", "SESSIONS", "MESSAGES", "TO SESSIONS", "TO MESSAGES", "")
	for _, c := range checks {
		name, mark := c.Tenant, "ok"
		if name == "" {
			name = "(default)"
		}
		if !c.CountsMatch {
			mark = "DIFFERENT"
		}
		t.row(name, c.Sessions, c.Messages, c.ToSessions, c.ToMessages, mark)
	}
	_ = t.flush()
}
