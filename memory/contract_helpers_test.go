package memory_test

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
