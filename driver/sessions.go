package driver

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/turnkeep/turnkeep/internal/searchtext"
)

// Limits of tenants, owners and titles.
const (
	MaxTenantBytes = 64  // a tenant name
	MaxUserBytes   = 255 // a session owner
	MaxTitleBytes  = 1024
	// MaxSessionKeyBytes bounds a session's key: its tenant, a separator
	// and its ID (see SessionKey).
	MaxSessionKeyBytes = MaxTenantBytes + 1 + MaxSessionIDBytes

	// DefaultListLimit is the page size of ListSessions when the query
	// gives none; MaxListLimit the largest page.
	DefaultListLimit = 50
	MaxListLimit     = 1000

	// DefaultSearchLimit is how many hits Search returns when the query
	// gives no limit.
	DefaultSearchLimit = 20
)

// SearchLimit returns how many hits a search of limit returns: limit,
// DefaultSearchLimit for 0, or an error wrapping ErrInvalidQuery for a
// limit below 0 or over MaxListLimit. Every Search of a SessionStore in
// package backend applies it.
func SearchLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultSearchLimit, nil
	case limit < 0 || limit > MaxListLimit:
		return 0, fmt.Errorf("%w: limit %d, want 0 to %d", ErrInvalidQuery, limit, MaxListLimit)
	}
	return limit, nil
}

// keySeparator separates the tenant from the session ID in a session key.
// No tenant, owner or session ID may hold it.
const keySeparator = "\x1f"

// SessionKey is how a backend names a session: its ID in the default
// tenant (""), and tenant + U+001F + its ID in any other. Tenants and
// session IDs never hold U+001F, so every (tenant, ID) pair has a key of
// its own, and the sessions a release before tenants wrote are the default
// tenant's, unchanged.
func SessionKey(tenant, sessionID string) string {
	if tenant == "" {
		return sessionID
	}
	return tenant + keySeparator + sessionID
}

// ParseSessionKey splits a session key into its tenant and session ID.
func ParseSessionKey(key string) (tenant, sessionID string) {
	if i := strings.Index(key, keySeparator); i >= 0 {
		return key[:i], key[i+1:]
	}
	return "", key
}

// ValidateSessionKey validates a key SessionKey made: its tenant with
// ValidateTenant and its session ID with ValidateSessionID.
func ValidateSessionKey(key string) error {
	tenant, id := ParseSessionKey(key)
	if err := ValidateTenant(tenant); err != nil {
		return err
	}
	return ValidateSessionID(id)
}

// ValidateTenant returns an error wrapping ErrInvalidTenant for a tenant
// name longer than MaxTenantBytes, not valid UTF-8, or holding a control
// character. "" is the default tenant.
func ValidateTenant(tenant string) error {
	if len(tenant) > MaxTenantBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidTenant, len(tenant), MaxTenantBytes)
	}
	if reason := badName(tenant); reason != "" {
		return fmt.Errorf("%w: %s", ErrInvalidTenant, reason)
	}
	return nil
}

// ValidateUser returns an error wrapping ErrInvalidUser for an owner name
// longer than MaxUserBytes, not valid UTF-8, or holding a control
// character.
func ValidateUser(user string) error {
	if len(user) > MaxUserBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidUser, len(user), MaxUserBytes)
	}
	if reason := badName(user); reason != "" {
		return fmt.Errorf("%w: %s", ErrInvalidUser, reason)
	}
	return nil
}

// PrepareSessionInfo validates the owner (ValidateUser), title and
// metadata of s, the fields CreateSession and Import store, and returns s
// with its metadata normalized as Prepare normalizes a turn's. Errors wrap
// ErrInvalidUser, ErrInvalidTurn (a title longer than MaxTitleBytes, or
// text or metadata Prepare would refuse) or ErrTurnTooLarge (metadata over
// maxMessageBytes; <= 0 means DefaultMaxMessageBytes).
func PrepareSessionInfo(s SessionInfo, maxMessageBytes int) (SessionInfo, error) {
	if maxMessageBytes <= 0 {
		maxMessageBytes = DefaultMaxMessageBytes
	}
	if err := ValidateUser(s.User); err != nil {
		return SessionInfo{}, err
	}
	if len(s.Title) > MaxTitleBytes {
		return SessionInfo{}, fmt.Errorf("%w: title is %d bytes, limit %d", ErrInvalidTurn, len(s.Title), MaxTitleBytes)
	}
	if reason := badText(s.Title); reason != "" {
		return SessionInfo{}, fmt.Errorf("%w: title %s", ErrInvalidTurn, reason)
	}
	meta, _, err := prepareMetadata(s.Metadata, maxMessageBytes)
	if err != nil {
		return SessionInfo{}, err
	}
	s.Metadata = meta
	return s, nil
}

// badName says why s cannot be a tenant or owner name, or returns "".
func badName(s string) string {
	if reason := badText(s); reason != "" {
		return reason
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Sprintf("contains the control character %U", r)
		}
	}
	return ""
}

// A SessionInfo describes a stored session.
type SessionInfo struct {
	ID        string
	User      string // the owner; "" when none was recorded
	Title     string
	Metadata  map[string]any
	TurnCount int
	Tokens    int // the tokens of every message the session holds
	CreatedAt time.Time
	UpdatedAt time.Time  // the last write: a turn saved or appended to, or CreateSession
	ForkOf    *ForkPoint // the session and turn it was forked at; nil for a session that is no fork
}

// A ForkPoint is where a fork left its parent: the parent session's ID (in
// the same tenant) and the ID of the last turn the fork shares with it.
type ForkPoint struct {
	SessionID string
	TurnID    string
}

// A SessionQuery selects a page of sessions for ListSessions.
type SessionQuery struct {
	User  string // "" lists every session of the tenant; else exactly this owner's
	After string // the Next of the previous page; "" for the first
	Limit int    // sessions per page: default DefaultListLimit, at most MaxListLimit
}

// A SessionPage is one page of ListSessions.
type SessionPage struct {
	Sessions []SessionInfo // most recently updated first
	Next     string        // "" on the last page
}

// A DeleteReport says what DeleteUser or Expire removed.
type DeleteReport struct {
	Sessions int
	Messages int
}

// A SearchQuery selects messages for Search.
type SearchQuery struct {
	Text      string // words to find, all of them; operators of the database's search syntax are taken as text
	User      string // "" searches the whole tenant; else exactly this owner's sessions
	SessionID string // "" searches every session in scope
	Limit     int    // default DefaultSearchLimit, at most MaxListLimit
}

// A SearchHit is a message Search found.
type SearchHit struct {
	SessionID string
	TurnID    string
	Message   Message
	Snippet   string    // the part of the message around the first match
	Score     float64   // higher is a better match; comparable within one search only
	Time      time.Time // the Timestamp of the message's turn, in UTC
}

// A HistoryQuery selects a page of a session's turns for History.
type HistoryQuery struct {
	After       string // the Next of the previous page; "" for the first
	Limit       int    // turns per page: default DefaultListLimit, at most MaxListLimit
	NewestFirst bool   // pages run from the newest turn back
}

// A HistoryPage is one page of History.
type HistoryPage struct {
	Turns []Turn // in the order the query asked for
	Next  string // "" on the last page
}

// SearchTerms splits search text into the terms a SessionStore matches:
// lower-cased runs of letters and digits, each character of a script
// written without spaces (Han, Hiragana, Katakana, Hangul) a term of its
// own; everything else separates terms. Backends index text the same way,
// so a query is only ever words, never search syntax.
func SearchTerms(text string) []string { return searchtext.Terms(text) }

// Limits of a search query (SearchQuery.Text), which Search and every
// SessionStore in package backend refuse with ErrInvalidQuery before
// they read the database.
//
// Beyond a few terms a query costs the database in proportion to its
// distinct terms: each is one more posting list to read and intersect,
// and SQLite's FTS5 parses the query in time quadratic in its terms
// without checking the context (a query of 100,000 CJK characters spent
// 36 s there, whatever its deadline). MaxSearchTerms bounds that: at
// 120,000 messages a query of 128 common terms costs about what one of
// 16 does (docs/search-limits.md has the figures), and it holds two
// sentences of CJK text (each CJK character is a term of its own, so a
// 60-character sentence is up to 60 terms). MaxSearchBytes bounds the
// text, so that an oversized query is refused by its length before it is
// read; a query at the terms limit takes a few hundred bytes of words, 3
// bytes a CJK character.
const (
	MaxSearchTerms = 128  // distinct terms of a query, after SearchTerms
	MaxSearchBytes = 4096 // bytes of a query's text
)

// QueryTerms returns the distinct terms of a search query's text (as
// SearchTerms splits it, each once, in the order they first occur): what
// a SessionStore matches. Text longer than MaxSearchBytes, or with more
// than MaxSearchTerms distinct terms, is ErrInvalidQuery; a query is
// refused by its length before any of it is read, and by its terms as
// soon as the term past the limit is found, so that refusing one
// allocates no more than a query within the limits.
func QueryTerms(text string) ([]string, error) {
	if len(text) > MaxSearchBytes {
		return nil, fmt.Errorf("%w: search text is %d bytes, at most %d", ErrInvalidQuery, len(text), MaxSearchBytes)
	}
	var terms []string
	seen := make(map[string]struct{})
	for t := range searchtext.All(text) {
		if _, ok := seen[t]; ok {
			continue
		}
		if len(terms) == MaxSearchTerms {
			return nil, fmt.Errorf("%w: search text has more than %d distinct terms", ErrInvalidQuery, MaxSearchTerms)
		}
		seen[t] = struct{}{}
		terms = append(terms, t)
	}
	return terms, nil
}

// SearchText is text as a search index holds it: its terms (SearchTerms)
// separated by spaces, so that any tokenizer splitting on spaces finds
// them.
func SearchText(text string) string { return searchtext.Text(text) }

// Snippet returns the part of text around the first of terms it holds
// (case-insensitively), at most about 160 bytes, with "…" where it was
// cut; the start of text when it holds none.
func Snippet(text string, terms []string) string {
	lower := strings.ToLower(text)
	at := -1
	for _, t := range terms {
		if i := strings.Index(lower, t); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at < 0 || len(lower) != len(text) { // lower-casing changed byte offsets: start at the top
		at = 0
	}
	from, to := at-60, at+100
	if from < 0 {
		from = 0
	}
	if to > len(text) {
		to = len(text)
	}
	for from > 0 && !utf8.RuneStart(text[from]) {
		from--
	}
	for to < len(text) && !utf8.RuneStart(text[to]) {
		to++
	}
	s := text[from:to]
	if from > 0 {
		s = "…" + s
	}
	if to < len(text) {
		s += "…"
	}
	return s
}
