package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

var sessionsLsCmd = &command{
	name:    "sessions ls",
	summary: "List the tenant's sessions, most recently updated first, a page at a time.",
	example: "turnkeep sessions ls --tenant acme --user ada --limit 20\nturnkeep sessions ls --after CURSOR   # the next page, as the last one printed",
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.user, "user", "", "only this owner's sessions")
		fs.IntVar(&o.limit, "limit", memory.DefaultListLimit, fmt.Sprintf("sessions per page, at most %d", memory.MaxListLimit))
		fs.StringVar(&o.after, "after", "", "the cursor of the next page, as the previous page printed it")
	},
	run: runSessionsLs,
}

var sessionsShowCmd = &command{
	name:    "sessions show",
	args:    "ID",
	nargs:   1,
	summary: "Show a conversation: every turn with its time, each message with its role, tool calls and results. With --json, the JSON Lines of 'sessions export'.",
	example: "turnkeep sessions show s1 --tenant acme",
	run:     runSessionsShow,
}

var sessionsExportCmd = &command{
	name:    "sessions export",
	args:    "ID",
	nargs:   1,
	summary: "Write a session as JSON Lines (a line describing it, then one per turn) to stdout or a file.",
	example: "turnkeep sessions export s1 -o s1.jsonl",
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.out, "o", "", "write to this `file` instead of stdout (replaced only when the export succeeds)")
	},
	run: runSessionsExport,
}

var sessionsImportCmd = &command{
	name:  "sessions import",
	args:  "FILE",
	nargs: 1,
	summary: "Store a session 'sessions export' wrote ('-' reads stdin), all or nothing: a malformed or refused file\n" +
		"stores nothing. Turns are saved by ID, so importing twice stores nothing twice. Creates the tables if need be.",
	example: "turnkeep sessions import s1.jsonl --tenant acme\nturnkeep sessions export s1 --db sqlite:///a.db |\n    turnkeep sessions import - --db sqlite:///b.db",
	run:     runSessionsImport,
}

var sessionsRmCmd = &command{
	name:    "sessions rm",
	args:    "ID",
	nargs:   1,
	summary: "Remove a session: its turns, search entries and its row.",
	example: "turnkeep sessions rm s1 --tenant acme",
	run:     runSessionsRm,
}

var usersDeleteCmd = &command{
	name:  "users delete",
	args:  "USER",
	nargs: 1,
	summary: "Remove every session the user owns in the tenant (e.g. an erasure request). Asks for confirmation unless " +
		"--yes; without a terminal to ask on, refuses unless --yes.",
	example: "turnkeep users delete ada --tenant acme --yes",
	flags: func(fs *flag.FlagSet, o *options) {
		fs.BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
	},
	run: runUsersDelete,
}

var expireCmd = &command{
	name: "expire",
	summary: "Remove the tenant's sessions not updated for the given time (units d, h, m, s: 90d, 36h, 1d12h). " +
		"Under an hour, sessions may still be in use: asks for confirmation unless --yes, as 'users delete' does.",
	example: "turnkeep expire --idle 90d --tenant acme",
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.idle, "idle", "", "remove sessions idle this long (required), e.g. 90d")
		fs.BoolVar(&o.yes, "yes", false, "do not ask for confirmation (asked when --idle is under an hour)")
	},
	run: runExpire,
}

var searchCmd = &command{
	name:    "search",
	args:    "TEXT",
	nargs:   1,
	summary: fmt.Sprintf("Find messages holding every word of TEXT (at most %d distinct words, %d bytes), best first.", memory.MaxSearchTerms, memory.MaxSearchBytes),
	example: "turnkeep search 'refund order' --tenant acme --user ada --limit 10",
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.user, "user", "", "only this owner's sessions")
		fs.StringVar(&o.session, "session", "", "only this session")
		fs.IntVar(&o.limit, "limit", 20, fmt.Sprintf("hits, at most %d", memory.MaxListLimit))
	},
	run: runSearch,
}

var statsCmd = &command{
	name:    "stats",
	summary: "Count sessions, turns and messages per tenant (every tenant unless --tenant), and the database's size.",
	example: "turnkeep stats --db sqlite:///chat.db --json",
	run:     runStats,
}

func runSessionsLs(ctx context.Context, a *app, o *options, _ []string) error {
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	if o.limit < 1 || o.limit > memory.MaxListLimit {
		return usagef("turnkeep sessions ls", "--limit %d: want 1 to %d", o.limit, memory.MaxListLimit)
	}
	p, err := s.mem.ListSessions(ctx, memory.SessionQuery{User: o.user, After: o.after, Limit: o.limit})
	if err != nil {
		return dbErr(err)
	}
	if o.json {
		list := make([]sessionJSON, len(p.Sessions))
		for i, info := range p.Sessions {
			list[i] = toSessionJSON(info)
		}
		return writeJSON(a.stdout, map[string]any{"sessions": list, "next": p.Next})
	}
	t := newTable(a.stdout, "ID", "USER", "TITLE", "TURNS", "TOKENS", "UPDATED")
	for _, info := range p.Sessions {
		t.row(info.ID, dash(info.User), dash(clip(info.Title, 40)), info.TurnCount, info.Tokens, formatTime(info.UpdatedAt))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(p.Sessions) == 0 {
		fmt.Fprintln(a.stdout, "(no sessions)")
	}
	if p.Next != "" {
		fmt.Fprintf(a.stdout, "more: --after %s\n", p.Next)
	}
	return nil
}

// sessionJSON is a session as the command prints it.
type sessionJSON struct {
	ID        string         `json:"id"`
	User      string         `json:"user"`
	Title     string         `json:"title"`
	Metadata  map[string]any `json:"metadata,omitempty"`
	Turns     int            `json:"turns"`
	Tokens    int            `json:"tokens"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

func toSessionJSON(i memory.SessionInfo) sessionJSON {
	return sessionJSON{ID: i.ID, User: i.User, Title: i.Title, Metadata: i.Metadata, Turns: i.TurnCount, Tokens: i.Tokens, CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt}
}

func runSessionsShow(ctx context.Context, a *app, o *options, args []string) error {
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	id := args[0]
	if o.json {
		return dbErr(s.mem.Export(ctx, id, a.stdout))
	}
	info, err := s.mem.SessionInfo(ctx, id)
	if err != nil {
		return dbErr(err)
	}
	w := bufio.NewWriter(a.stdout)
	fmt.Fprintf(w, "session %s", info.ID)
	if o.tenant != "" {
		fmt.Fprintf(w, " (tenant %s)", o.tenant)
	}
	if info.User != "" {
		fmt.Fprintf(w, " · user %s", info.User)
	}
	if info.Title != "" {
		fmt.Fprintf(w, " · %q", info.Title)
	}
	fmt.Fprintf(w, "\n%s · %s · created %s · updated %s\n", plural(info.TurnCount, "turn"), plural(info.Tokens, "token"), formatTime(info.CreatedAt), formatTime(info.UpdatedAt))
	if err := writeForks(ctx, w, s.mem, info); err != nil {
		return dbErr(err)
	}
	sum, _, err := s.b.Load(ctx, driver.SessionKey(o.tenant, id), driver.WindowQuery{MaxTurns: 1, Known: driver.UnknownVersion, Summary: true})
	if err != nil {
		return dbErr(err)
	}
	if sm := sum.Summary; sm != nil {
		fmt.Fprintf(w, "\nsummary of turns 1-%d · %s · updated %s\n", sm.Turns, plural(sm.Tokens, "token"), formatTime(sm.UpdatedAt))
		for _, line := range strings.Split(sm.Text, "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	q := memory.HistoryQuery{Limit: memory.MaxListLimit}
	for {
		p, err := s.mem.History(ctx, id, q)
		if err != nil {
			return dbErr(err)
		}
		for _, t := range p.Turns {
			writeTurn(w, t)
		}
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	return w.Flush()
}

// writeForks writes where the session was forked from, if it is a fork,
// and the sessions forked from it, newest first, if any: a fork and its
// parent each name the other. A backend without forks has none.
func writeForks(ctx context.Context, w io.Writer, mem *memory.PersistentBufferMemory, info memory.SessionInfo) error {
	if f := info.ForkOf; f != nil {
		fmt.Fprintf(w, "fork of session %s at turn %s\n", f.SessionID, f.TurnID)
	}
	forks, err := mem.ListForks(ctx, info.ID)
	if errors.Is(err, memory.ErrNotSupported) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(forks) > 0 {
		fmt.Fprintf(w, "%s, newest first:\n", plural(len(forks), "fork"))
		for _, f := range forks {
			at := ""
			if f.ForkOf != nil {
				at = " at turn " + f.ForkOf.TurnID
			}
			fmt.Fprintf(w, "  %s%s · %s · created %s\n", f.ID, at, plural(f.TurnCount, "turn"), formatTime(f.CreatedAt))
		}
	}
	return nil
}

// writeTurn writes a turn for reading: a heading with its time and ID,
// then each message under its role.
func writeTurn(w io.Writer, t memory.Turn) {
	fmt.Fprintf(w, "\n── %s · turn %s\n", formatTime(t.Timestamp), t.ID)
	for _, m := range t.Messages {
		role := string(m.Role)
		if m.Name != "" {
			role += " " + m.Name
		}
		if m.ToolCallID != "" {
			role += " ← " + m.ToolCallID
		}
		text := m.Content
		for _, p := range m.Parts {
			switch {
			case p.Text != "":
				text += "\n" + p.Text
			case p.URL != "":
				text += fmt.Sprintf("\n[%s %s]", p.Type, p.URL)
			default:
				text += fmt.Sprintf("\n[%s %s, %s]", p.Type, p.MIMEType, plural(len(p.Data), "byte"))
			}
		}
		text = strings.TrimPrefix(text, "\n")
		if text != "" {
			fmt.Fprintf(w, "%s: %s\n", role, indent(text))
		}
		for _, c := range m.ToolCalls {
			fmt.Fprintf(w, "%s: → %s(%s) [%s]\n", role, c.Name, c.Arguments, c.ID)
		}
	}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }

func runSessionsExport(ctx context.Context, a *app, o *options, args []string) error {
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	if o.out == "" || o.out == "-" {
		return dbErr(s.mem.Export(ctx, args[0], a.stdout))
	}
	// To a file beside the target, renamed over it only once complete, so
	// a failed export leaves no file and never a half one.
	f, err := os.CreateTemp(filepath.Dir(o.out), "."+filepath.Base(o.out)+".*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(f.Name())
	if err := s.mem.Export(ctx, args[0], f); err != nil {
		f.Close()
		return dbErr(err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(f.Name(), o.out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if !o.json {
		fmt.Fprintf(a.stderr, "exported session %s to %s\n", args[0], o.out)
	}
	return nil
}

func runSessionsImport(ctx context.Context, a *app, o *options, args []string) error {
	var r io.Reader = a.stdin
	if args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return err // fs.ErrNotExist: exit 3
		}
		defer f.Close()
		r = f
	}
	s, err := open(ctx, o.db, o.tenant, migrateSchema)
	if err != nil {
		return err
	}
	defer s.Close()
	info, err := s.mem.Import(ctx, r)
	if err != nil {
		return dbErr(err)
	}
	if o.json {
		return writeJSON(a.stdout, toSessionJSON(info))
	}
	fmt.Fprintf(a.stdout, "imported session %s: %s\n", info.ID, plural(info.TurnCount, "turn"))
	return nil
}

func runSessionsRm(ctx context.Context, a *app, o *options, args []string) error {
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	info, err := s.mem.SessionInfo(ctx, args[0])
	if err != nil {
		return dbErr(err)
	}
	if err := s.mem.Clear(ctx, args[0]); err != nil {
		return dbErr(err)
	}
	if o.json {
		return writeJSON(a.stdout, map[string]any{"removed": info.ID, "turns": info.TurnCount})
	}
	fmt.Fprintf(a.stdout, "removed session %s (%s)\n", info.ID, plural(info.TurnCount, "turn"))
	return nil
}

func runUsersDelete(ctx context.Context, a *app, o *options, args []string) error {
	user := args[0]
	if user == "" {
		return usagef("turnkeep users delete", "users delete: empty user")
	}
	if err := memory.ValidateUser(user); err != nil {
		return err
	}
	if !o.yes && !a.stdinTTY {
		return usagef("turnkeep users delete", "users delete: refusing without confirmation: stdin is not a terminal; pass --yes")
	}
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	p, err := s.mem.ListSessions(ctx, memory.SessionQuery{User: user, Limit: 1})
	if err != nil {
		return dbErr(err)
	}
	if len(p.Sessions) == 0 {
		return fmt.Errorf("%w: user %q has no sessions in tenant %q", errNotFound, user, o.tenant)
	}
	if !o.yes && !a.confirm(fmt.Sprintf("Delete every session of user %q in tenant %q?", user, o.tenant)) {
		return fmt.Errorf("users delete: not confirmed: nothing deleted")
	}
	r, err := s.mem.DeleteUser(ctx, user)
	if err != nil {
		return dbErr(err)
	}
	if o.json {
		return writeJSON(a.stdout, map[string]any{"user": user, "sessions": r.Sessions, "messages": r.Messages})
	}
	fmt.Fprintf(a.stdout, "deleted user %s: %s, %s\n", user, plural(r.Sessions, "session"), plural(r.Messages, "message"))
	return nil
}

func runExpire(ctx context.Context, a *app, o *options, _ []string) error {
	if o.idle == "" {
		return usagef("turnkeep expire", "expire: --idle is required (e.g. --idle 90d)")
	}
	idle, err := parseIdle(o.idle)
	if err != nil {
		return usagef("turnkeep expire", "expire: --idle %q: %v", o.idle, err)
	}
	// Under an hour, what it removes may be a conversation going on.
	ask := idle < time.Hour && !o.yes
	if ask && !a.stdinTTY {
		return usagef("turnkeep expire", "expire: --idle %s is under an hour: refusing without confirmation: stdin is not a terminal; pass --yes", o.idle)
	}
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	if ask && !a.confirm(fmt.Sprintf("Remove every session of tenant %q not updated for %s, maybe still in use?", o.tenant, idle)) {
		return fmt.Errorf("expire: not confirmed: nothing removed")
	}
	before := time.Now().UTC().Add(-idle)
	r, err := s.mem.Expire(ctx, before)
	if err != nil {
		return dbErr(err)
	}
	if o.json {
		return writeJSON(a.stdout, map[string]any{"before": before, "sessions": r.Sessions, "messages": r.Messages})
	}
	fmt.Fprintf(a.stdout, "expired %s (%s) not updated since %s\n", plural(r.Sessions, "session"), plural(r.Messages, "message"), formatTime(before))
	return nil
}

// parseIdle parses a duration that may also count days: "90d", "1d12h",
// "36h", "30m".
func parseIdle(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	if i := strings.Index(rest, "d"); i >= 0 {
		var days int
		if _, err := fmt.Sscanf(rest[:i], "%d", &days); err != nil || fmt.Sprint(days) != rest[:i] || days < 0 {
			return 0, fmt.Errorf("want a number of days before d")
		}
		if days > 100000 {
			return 0, fmt.Errorf("%d days is too long", days)
		}
		total = time.Duration(days) * 24 * time.Hour
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("want a duration such as 90d, 36h or 1d12h")
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("want a positive duration")
	}
	return total, nil
}

func runSearch(ctx context.Context, a *app, o *options, args []string) error {
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	if o.limit < 1 || o.limit > memory.MaxListLimit {
		return usagef("turnkeep search", "--limit %d: want 1 to %d", o.limit, memory.MaxListLimit)
	}
	hits, err := s.mem.Search(ctx, memory.SearchQuery{Text: args[0], User: o.user, SessionID: o.session, Limit: o.limit})
	if err != nil {
		return dbErr(err)
	}
	if o.json {
		type hitJSON struct {
			Session string  `json:"session"`
			Turn    string  `json:"turn"`
			Message string  `json:"message"`
			Role    string  `json:"role"`
			Snippet string  `json:"snippet"`
			Score   float64 `json:"score"`
		}
		out := []hitJSON{}
		for _, h := range hits {
			out = append(out, hitJSON{h.SessionID, h.TurnID, h.Message.ID, string(h.Message.Role), h.Snippet, h.Score})
		}
		return writeJSON(a.stdout, out)
	}
	t := newTable(a.stdout, "SESSION", "TURN", "ROLE", "SNIPPET")
	for _, h := range hits {
		t.row(h.SessionID, h.TurnID, h.Message.Role, clip(oneLine(h.Snippet), 80))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(hits) == 0 {
		fmt.Fprintln(a.stdout, "(no matches)")
	}
	return nil
}

func runStats(ctx context.Context, a *app, o *options, _ []string) error {
	s, err := open(ctx, o.db, o.tenant, readOnlySchema)
	if err != nil {
		return err
	}
	defer s.Close()
	counts, err := s.b.TenantCounts(ctx)
	if err != nil {
		return dbErr(err)
	}
	size, err := s.b.DatabaseSize(ctx)
	if err != nil {
		return dbErr(err)
	}
	type tenantJSON struct {
		Tenant   string `json:"tenant"`
		Sessions int64  `json:"sessions"`
		Turns    int64  `json:"turns"`
		Messages int64  `json:"messages"`
	}
	var (
		tenants               []tenantJSON
		sessions, turns, msgs int64
	)
	for _, c := range counts {
		if o.tenant != "" && c.Tenant != o.tenant {
			continue
		}
		tenants = append(tenants, tenantJSON(c))
		sessions, turns, msgs = sessions+c.Sessions, turns+c.Turns, msgs+c.Messages
	}
	if o.json {
		if tenants == nil {
			tenants = []tenantJSON{}
		}
		return writeJSON(a.stdout, map[string]any{"tenants": tenants, "tenant_count": len(tenants),
			"sessions": sessions, "turns": turns, "messages": msgs, "database_bytes": size})
	}
	t := newTable(a.stdout, "TENANT", "SESSIONS", "TURNS", "MESSAGES")
	for _, c := range tenants {
		name := c.Tenant
		if name == "" {
			name = "(default)"
		}
		t.row(name, c.Sessions, c.Turns, c.Messages)
	}
	t.row("TOTAL", sessions, turns, msgs)
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s · database size %s\n", plural(len(tenants), "tenant"), humanBytes(size))
	return nil
}

// confirm asks question on stderr and reports whether the answer read
// from stdin is yes.
func (a *app) confirm(question string) bool {
	fmt.Fprintf(a.stderr, "%s This cannot be undone. [y/N] ", question)
	answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "y" || answer == "yes"
}
