package tests

import (
	"context"

	"github.com/turnkeep/turnkeep/driver"
)

// storeTurn stores turn as the newest turn of the session in b, which
// validates it (Save of a turn Prepare did not make).
func storeTurn(ctx context.Context, b driver.Backend, sessionID string, turn driver.Turn) error {
	_, err := b.Save(ctx, sessionID, driver.PreparedTurn{Turn: turn})
	return err
}

// readWindow returns the newest maxTurns turns of the session in b,
// oldest first, and its turn count (Load of an unknown version).
func readWindow(ctx context.Context, b driver.Backend, sessionID string, maxTurns int) (driver.Window, error) {
	w, _, err := b.Load(ctx, sessionID, driver.WindowQuery{MaxTurns: maxTurns, Known: driver.UnknownVersion})
	return w, err
}
