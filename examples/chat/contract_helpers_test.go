package main

import (
	"context"

	"github.com/turnkeep/turnkeep/driver"
)

// readWindow returns the newest maxTurns turns of the session in b,
// oldest first, and its turn count (Load of an unknown version).
func readWindow(ctx context.Context, b driver.Backend, sessionID string, maxTurns int) (driver.Window, error) {
	w, _, err := b.Load(ctx, sessionID, driver.WindowQuery{MaxTurns: maxTurns, Known: driver.UnknownVersion})
	return w, err
}
