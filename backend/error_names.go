package backend

import (
	"fmt"
	"strings"

	"github.com/turnkeep/turnkeep/driver"
)

// sessionName names the session of key as its user wrote it: `tenant
// "acme" session "s1"`, or `session "s1"` in the default tenant. Errors
// name a session so, never by its key, whose U+001F separator would read
// "acme\x1fs1".
func sessionName(key string) string {
	tenant, id := driver.ParseSessionKey(key)
	if tenant == "" {
		return fmt.Sprintf("session %q", id)
	}
	return fmt.Sprintf("tenant %q session %q", tenant, id)
}

// bare is a sentinel of package memory as an error of this package wraps
// it: its text without the "memory: " prefix, so that an error passed up
// through a memory names each layer once ("memory: session info: backend:
// session "s1": session not found", not "…: memory: session not found").
// errors.Is and errors.As see the sentinel.
type bare struct{ err error }

func (e bare) Error() string { return strings.TrimPrefix(e.err.Error(), "memory: ") }

func (e bare) Unwrap() error { return e.err }

// errTurnNotFound is the error of an append to a turn the session of key
// does not hold; it wraps driver.ErrTurnNotFound.
func errTurnNotFound(key, turnID string) error {
	return fmt.Errorf("%s turn %q: %w", sessionName(key), turnID, bare{driver.ErrTurnNotFound})
}
