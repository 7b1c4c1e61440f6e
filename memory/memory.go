package memory

import "context"

// Memory is what a chat application uses: save a turn, append to it as an
// answer streams, load the recent context of a session, forget a session.
type Memory interface {
	SaveTurn(ctx context.Context, sessionID string, turn Turn) error
	AppendMessages(ctx context.Context, sessionID, turnID string, msgs ...Message) error
	LoadContext(ctx context.Context, sessionID string, opts ...LoadOption) (Window, error)
	Clear(ctx context.Context, sessionID string) error
}

var (
	_ Memory = (*BufferMemory)(nil)
	_ Memory = (*PersistentBufferMemory)(nil)
)
