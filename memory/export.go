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

	"github.com/turnkeep/turnkeep/driver"
)

// ExportFormat names the JSON Lines format of Export, in its first line.
// Export writes it for a session with no summary, so that such a file
// stays readable by every release's Import; a session with a summary is
// written as exportFormatSummary, which adds the head's "summary" field
// (Import reads both; a release before summaries refuses the second by
// its format, never by losing the summary silently).
const ExportFormat = "turnkeep.session/1"

// exportFormatSummary is ExportFormat with the head's summary.
const exportFormatSummary = "turnkeep.session/2"

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
	Summary   *exportSummary `json:"summary,omitempty"` // exportFormatSummary only
}

// exportSummary is a session's summary in an export.
type exportSummary struct {
	Text      string    `json:"text"`
	Turns     int       `json:"turns"`
	Tokens    int       `json:"tokens"`
	UpdatedAt time.Time `json:"updated_at"`
}

// exportTurn is every following line: one turn.
type exportTurn struct {
	ID        string          `json:"id"`
	Timestamp time.Time       `json:"timestamp"`
	Metadata  map[string]any  `json:"metadata,omitempty"`
	Messages  []exportMessage `json:"messages"`
}

// exportToolCall and exportPart are a tool call and a part as Export
// writes them: the same JSON as a backend stores, but the export format's
// own, so that it stays as ExportFormat names it.
type exportToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments,omitempty"`
}

type exportPart struct {
	Type     string `json:"type"`
	Text     string `json:"text,omitempty"`
	URL      string `json:"url,omitempty"`
	MIMEType string `json:"mime_type,omitempty"`
	Data     []byte `json:"data,omitempty"` // base64
}

type exportMessage struct {
	ID         string           `json:"id"`
	Role       Role             `json:"role"`
	Content    string           `json:"content,omitempty"`
	Parts      []exportPart     `json:"parts,omitempty"`
	Name       string           `json:"name,omitempty"`
	ToolCalls  []exportToolCall `json:"tool_calls,omitempty"`
	ToolCallID string           `json:"tool_call_id,omitempty"`
	Metadata   map[string]any   `json:"metadata,omitempty"`
	Tokens     int              `json:"tokens,omitempty"`
}

// Export writes the session as JSON Lines: a line describing the session
// (format, id, user, title, metadata, turn_count, created_at, updated_at),
// then one line per turn, oldest first (id, timestamp, metadata, messages
// with every field). It reads the history a page at a time, so a long
// session is never held whole. A turn's line holds no seq: its place in
// the file is its position (Seq), and Import gives it that place. The format is documented in the README;
// Import reads it back.
func (m *PersistentBufferMemory) Export(ctx context.Context, sessionID string, w io.Writer) (err error) {
	defer m.trace(&ctx, opExport, sessionID).end(&err)
	info, err := m.SessionInfo(ctx, sessionID)
	if err != nil {
		return err
	}
	head := exportSession{Format: ExportFormat, ID: info.ID, User: info.User, Title: info.Title, Metadata: info.Metadata,
		TurnCount: info.TurnCount, CreatedAt: info.CreatedAt, UpdatedAt: info.UpdatedAt}
	if sum, err := m.storedSummary(ctx, sessionID); err != nil {
		return fmt.Errorf("memory: export: %w", err)
	} else if sum != nil {
		head.Format = exportFormatSummary
		head.Summary = &exportSummary{Text: sum.Text, Turns: sum.Turns, Tokens: sum.Tokens, UpdatedAt: sum.UpdatedAt}
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(head); err != nil {
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
			x.Parts = append(x.Parts, exportPart(p))
		}
		for _, c := range m.ToolCalls {
			x.ToolCalls = append(x.ToolCalls, exportToolCall(c))
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
// the session's owner, title and metadata and every turn, with its IDs and
// timestamps, all or nothing: the whole import is one transaction of the
// backend, so an import that fails, for whatever reason, stores nothing.
// The input is streamed: a line is read, checked and stored before the
// next is read, so memory does not grow with the file.
//
// Malformed JSON Lines are ErrInvalidImport naming the line, an invalid
// turn ErrInvalidTurn or ErrTurnTooLarge. Turns are stored by ID: a turn
// whose ID and messages equal what the session (or an earlier line)
// holds is no change, so importing a file twice stores nothing twice; a
// turn ID or a message ID held with other content is ErrInvalidImport
// naming the line. The file's owner must be the session's: a session
// another user owns is ErrSessionOwned, and an unowned one that holds
// turns is ErrSessionExists when the file names an owner (ClaimSession
// takes it); a new or empty unowned session takes the file's owner.
func (m *PersistentBufferMemory) Import(ctx context.Context, r io.Reader) (_ SessionInfo, err error) {
	defer m.trace(&ctx, opImport, "").end(&err)
	st, err := m.store()
	if err != nil {
		return SessionInfo{}, err
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxImportLine)
	line := 0
	// scan returns the next line that is not blank, or nil at the end.
	scan := func() ([]byte, error) {
		for sc.Scan() {
			line++
			if data := bytes.TrimSpace(sc.Bytes()); len(data) > 0 {
				return data, nil
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return nil, fmt.Errorf("%w: line %d is over %d bytes", ErrInvalidImport, line+1, maxImportLine)
			}
			return nil, fmt.Errorf("memory: import: %w", err)
		}
		return nil, nil
	}
	data, err := scan()
	if err != nil {
		return SessionInfo{}, err
	}
	if data == nil {
		return SessionInfo{}, fmt.Errorf("%w: no session line", ErrInvalidImport)
	}
	var head exportSession
	if err := decodeLine(data, &head); err != nil {
		return SessionInfo{}, fmt.Errorf("%w: line %d: %v", ErrInvalidImport, line, err)
	}
	switch {
	case head.Format == ExportFormat && head.Summary != nil:
		return SessionInfo{}, fmt.Errorf("%w: line %d: a summary in format %q", ErrInvalidImport, line, head.Format)
	case head.Format == ExportFormat, head.Format == exportFormatSummary:
	default:
		return SessionInfo{}, fmt.Errorf("%w: line %d: format %q, want %q or %q", ErrInvalidImport, line, head.Format, ExportFormat, exportFormatSummary)
	}
	var sum *Summary
	if h := head.Summary; h != nil {
		if h.Turns < 1 || h.Turns > head.TurnCount || h.Tokens < 0 {
			return SessionInfo{}, fmt.Errorf("%w: line %d: a summary of %d turns of %d", ErrInvalidImport, line, h.Turns, head.TurnCount)
		}
		if _, ok := m.backend.(driver.SummaryStore); !ok {
			return SessionInfo{}, fmt.Errorf("%w: line %d: the backend keeps no summaries", ErrInvalidImport, line)
		}
		sum = &Summary{Text: h.Text, Turns: h.Turns, Tokens: h.Tokens, UpdatedAt: h.UpdatedAt}
	}
	if err := ValidateSessionID(head.ID); err != nil {
		return SessionInfo{}, fmt.Errorf("%w: line %d: %w", ErrInvalidImport, line, err)
	}
	key, err := m.check(head.ID)
	if err != nil {
		return SessionInfo{}, err
	}
	info, err := m.checkSessionInfo(SessionInfo{ID: head.ID, User: head.User, Title: head.Title, Metadata: head.Metadata, CreatedAt: head.CreatedAt})
	if err != nil {
		return SessionInfo{}, fmt.Errorf("line %d: %w", line, err)
	}

	var (
		readErr  error // what next refused: returned as it is
		turnLine int   // the line of the turn next returned last
	)
	next := func() (driver.PreparedTurn, error) {
		data, err := scan()
		if err == nil && data == nil {
			return driver.PreparedTurn{}, io.EOF
		}
		if err == nil {
			err = ctx.Err()
		}
		if err == nil {
			var e exportTurn
			switch err := decodeLine(data, &e); {
			case err != nil:
				readErr = fmt.Errorf("%w: line %d: %v", ErrInvalidImport, line, err)
			case e.ID == "":
				readErr = fmt.Errorf("%w: line %d: a turn without an id", ErrInvalidImport, line)
			case e.Timestamp.IsZero():
				readErr = fmt.Errorf("%w: line %d: turn %s without a timestamp", ErrInvalidImport, line, e.ID)
			default:
				p, err := driver.Prepare(fromExport(e), m.now(), m.maxBytes, m.counter)
				if err != nil {
					readErr = fmt.Errorf("line %d: %w", line, err)
					return driver.PreparedTurn{}, readErr
				}
				turnLine = line
				return p, nil
			}
			return driver.PreparedTurn{}, readErr
		}
		readErr = err
		return driver.PreparedTurn{}, readErr
	}
	err = m.importTurns(ctx, st, key, info, sum, next)
	if _, atomic := st.(driver.SummaryImporter); err == nil && sum != nil && !atomic {
		err = m.importSummary(ctx, key, *sum)
	}
	switch {
	case err == nil:
		return m.SessionInfo(ctx, head.ID)
	case readErr != nil:
		return SessionInfo{}, readErr
	case errors.Is(err, ErrInvalidImport) && turnLine > 0:
		return SessionInfo{}, fmt.Errorf("memory: import: line %d: %w", turnLine, err)
	}
	return SessionInfo{}, fmt.Errorf("memory: import: %w", err)
}

// importTurns runs the backend's import, with the session's cached window
// held and then dropped, as ReplaceSession does. A backend that is a
// driver.SummaryImporter stores sum, when not nil, in the import's
// transaction; for another, Import stores it after (importSummary).
func (m *PersistentBufferMemory) importTurns(ctx context.Context, st driver.SessionStore, key string, info SessionInfo, sum *Summary, next func() (driver.PreparedTurn, error)) error {
	run := func() error {
		if si, ok := st.(driver.SummaryImporter); ok && sum != nil {
			return si.ImportSummary(ctx, key, info, *sum, next)
		}
		return st.Import(ctx, key, info, next)
	}
	if !m.cached {
		return run()
	}
	e, err := m.cache.acquire(ctx, key, m.now())
	if err != nil {
		return err
	}
	defer m.cache.release(e)
	err = run()
	m.cache.invalidate(key)
	return err
}

// decodeLine decodes one line of an import into v, refusing unknown
// fields.
func decodeLine(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// storedSummary returns the session's stored summary, nil for none or a
// backend that keeps none: one load statement.
func (m *PersistentBufferMemory) storedSummary(ctx context.Context, sessionID string) (*Summary, error) {
	key, err := m.check(sessionID)
	if err != nil {
		return nil, err
	}
	if _, ok := m.backend.(driver.SummaryStore); !ok {
		return nil, nil
	}
	w, _, err := m.backend.Load(ctx, key, driver.WindowQuery{MaxTurns: 1, Known: driver.UnknownVersion, Counter: m.counter, Summary: true})
	return w.Summary, err
}

// importSummary stores an imported summary after the import, for a
// backend that is not a driver.SummaryImporter, when the session's first
// sum.Turns turns are the file's (the import stored them, or held them
// already) and the session has no summary covering more.
func (m *PersistentBufferMemory) importSummary(ctx context.Context, key string, sum Summary) error {
	st := m.backend.(driver.SummaryStore) // checked by Import
	w, _, err := m.backend.Load(ctx, key, driver.WindowQuery{MaxTurns: 1, Known: driver.UnknownVersion, Counter: m.counter, Summary: true})
	if err != nil {
		return err
	}
	if sum.Turns > w.TurnCount || (w.Summary != nil && w.Summary.Turns >= sum.Turns) {
		return nil
	}
	if err := st.PutSummary(ctx, key, sum); err != nil {
		return err
	}
	m.cache.invalidate(key)
	return nil
}
