package memory

import "github.com/turnkeep/turnkeep/internal/closehook"

// turnkeep.Open owns the database and backend under the memory it
// returns: it hands them to the memory's Close through closehook, so that
// one Close releases everything Open made.
func init() {
	closehook.Set = func(m any, closeFn func() error) {
		m.(*PersistentBufferMemory).onClose = closeFn
	}
}
