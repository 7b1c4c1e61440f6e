package memory

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// ExportFormat names the JSON Lines format of Export, in its first line.
const ExportFormat = "turnkeep.session/1"

// exportSession is the first line of an export.
type exportSession struct {
	Format    string         `json:"format"`
	ID        string         `json:"id"`
	User      string         `json:"user,omitempty"`
	Title     string         `json:"title,omitempty"`
	Metadata  map[string]any `json:"metadata,omitempty"`
	TurnCount int            `json:"turn_count"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// exportTurn is every following line: one turn.
type exportTurn struct {
	ID        string          `json:"id"`
	Timestamp time.Time       `json:"timestamp"`
	Metadata  map[string]any  `json:"metadata,omitempty"`
	Messages  []exportMessage `json:"messages"`
}

type exportMessage struct {
	ID         string           `json:"id"`
	Role       Role             `json:"role"`
	Content    string           `json:"content,omitempty"`
	Parts      []storedPart     `json:"parts,omitempty"`
	Name       string           `json:"name,omitempty"`
	ToolCalls  []storedToolCall `json:"tool_calls,omitempty"`
	ToolCallID string           `json:"tool_call_id,omitempty"`
	Metadata   map[string]any   `json:"metadata,omitempty"`
	Tokens     int              `json:"tokens,omitempty"`
}

// Export writes the session as JSON Lines: a line describing the session
// (format, id, user, title, metadata, turn_count, created_at, updated_at),
// then one line per turn, oldest first (id, timestamp, metadata, messages
// with every field). It reads the history a page at a time, so a long
// session is never held whole. The format is documented in the README;
// Import reads it back.
func (m *PersistentBufferMemory) Export(ctx context.Context, sessionID string, w io.Writer) (err error) {
	if t := m.obs(); t != nil {
		var r run
		ctx, r = t.start(ctx, opExport, m.tenant, sessionID, m.now())
		defer func() { t.end(ctx, r, err, m.now()) }()
	}
	info, err := m.SessionInfo(ctx, sessionID)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(exportSession{Format: ExportFormat, ID: info.ID, User: info.User, Title: info.Title, Metadata: info.Metadata,
		TurnCount: info.TurnCount, CreatedAt: info.CreatedAt, UpdatedAt: info.UpdatedAt}); err != nil {
		return fmt.Errorf("memory: export: %w", err)
	}
	q := HistoryQuery{Limit: 100}
	for {
		p, err := m.History(ctx, sessionID, q)
		if err != nil {
			return err
		}
		for _, t := range p.Turns {
			if err := enc.Encode(toExport(t)); err != nil {
				return fmt.Errorf("memory: export: %w", err)
			}
		}
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("memory: export: %w", err)
	}
	return nil
}

func toExport(t Turn) exportTurn {
	e := exportTurn{ID: t.ID, Timestamp: t.Timestamp, Metadata: t.Metadata, Messages: make([]exportMessage, len(t.Messages))}
	for i, m := range t.Messages {
		x := exportMessage{ID: m.ID, Role: m.Role, Content: m.Content, Name: m.Name, ToolCallID: m.ToolCallID, Metadata: m.Metadata, Tokens: m.Tokens}
		for _, p := range m.Parts {
			x.Parts = append(x.Parts, storedPart(p))
		}
		for _, c := range m.ToolCalls {
			x.ToolCalls = append(x.ToolCalls, storedToolCall(c))
		}
		e.Messages[i] = x
	}
	return e
}

func fromExport(e exportTurn) Turn {
	t := Turn{ID: e.ID, Timestamp: e.Timestamp, Metadata: e.Metadata, Messages: make([]Message, len(e.Messages))}
	for i, x := range e.Messages {
		m := Message{ID: x.ID, Role: x.Role, Content: x.Content, Name: x.Name, ToolCallID: x.ToolCallID, Metadata: x.Metadata}
		for _, p := range x.Parts {
			m.Parts = append(m.Parts, Part(p))
		}
		for _, c := range x.ToolCalls {
			m.ToolCalls = append(m.ToolCalls, ToolCall(c))
		}
		t.Messages[i] = m
	}
	return t
}

// maxImportLine bounds one line of an import: a turn of MaxTurnMessages
// messages at the size limit would be larger, but no export of a real
// session comes near it.
const maxImportLine = 64 << 20

// Import reads what Export wrote and stores it in this memory's tenant:
// the session's owner, title and metadata (CreateSession) and every turn,
// with its IDs and timestamps. Turns are saved by ID, so importing twice
// stores nothing twice, and an interrupted import can be run again. The
// whole input is read and validated before anything is written: malformed
// JSON Lines are ErrInvalidImport (naming the line), an invalid turn
// ErrInvalidTurn or ErrTurnTooLarge, and nothing is stored.
func (m *PersistentBufferMemory) Import(ctx context.Context, r io.Reader) (_ SessionInfo, err error) {
	if t := m.obs(); t != nil {
		var rec run
		ctx, rec = t.start(ctx, opImport, m.tenant, "", m.now())
		defer func() { t.end(ctx, rec, err, m.now()) }()
	}
	if _, err := m.store(); err != nil {
		return SessionInfo{}, err
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxImportLine)
	var (
		head  exportSession
		turns []PreparedTurn
		line  int
	)
	for sc.Scan() {
		line++
		data := bytes.TrimSpace(sc.Bytes())
		if len(data) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if head.Format == "" {
			if err := dec.Decode(&head); err != nil {
				return SessionInfo{}, fmt.Errorf("%w: line %d: %v", ErrInvalidImport, line, err)
			}
			if head.Format != ExportFormat {
				return SessionInfo{}, fmt.Errorf("%w: line %d: format %q, want %q", ErrInvalidImport, line, head.Format, ExportFormat)
			}
			if err := ValidateSessionID(head.ID); err != nil {
				return SessionInfo{}, fmt.Errorf("%w: line %d: %w", ErrInvalidImport, line, err)
			}
			continue
		}
		var e exportTurn
		if err := dec.Decode(&e); err != nil {
			return SessionInfo{}, fmt.Errorf("%w: line %d: %v", ErrInvalidImport, line, err)
		}
		if e.ID == "" {
			return SessionInfo{}, fmt.Errorf("%w: line %d: a turn without an id", ErrInvalidImport, line)
		}
		if e.Timestamp.IsZero() {
			return SessionInfo{}, fmt.Errorf("%w: line %d: turn %s without a timestamp", ErrInvalidImport, line, e.ID)
		}
		p, err := prepare(fromExport(e), m.now(), m.maxBytes, m.counter)
		if err != nil {
			return SessionInfo{}, fmt.Errorf("line %d: %w", line, err)
		}
		turns = append(turns, p)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return SessionInfo{}, fmt.Errorf("%w: line %d is over %d bytes", ErrInvalidImport, line+1, maxImportLine)
		}
		return SessionInfo{}, fmt.Errorf("memory: import: %w", err)
	}
	if head.Format == "" {
		return SessionInfo{}, fmt.Errorf("%w: no session line", ErrInvalidImport)
	}
	if head.User != "" || head.Title != "" || len(head.Metadata) > 0 {
		err := m.CreateSession(ctx, SessionInfo{ID: head.ID, User: head.User, Title: head.Title, Metadata: head.Metadata, CreatedAt: head.CreatedAt})
		if err != nil {
			return SessionInfo{}, err
		}
	}
	key := SessionKey(m.tenant, head.ID)
	for _, p := range turns {
		if err := m.saveTurn(ctx, key, p); err != nil {
			return SessionInfo{}, fmt.Errorf("memory: import: turn %s: %w", p.ID, err)
		}
	}
	return m.SessionInfo(ctx, head.ID)
}
