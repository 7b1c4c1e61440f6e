package driver

// A Version identifies one stored state of a session. Every write that
// changes a session (a stored turn, an append, a clear) gives it a version
// it never had before, and a session that does not exist has version
// NoSession. Versions are compared for equality only; their order means
// nothing.
type Version int64

// Version values with a meaning of their own.
const (
	// NoSession is the version of a session that does not exist.
	NoSession Version = 0
	// UnknownVersion, as WindowQuery.Known, matches no session state, so
	// the window is always returned. A backend that does not version its
	// sessions reports it for every state; a memory over it then reads
	// every window through unless WithStaleReads allows otherwise.
	UnknownVersion Version = -1
)

// A Saved reports what a save or an append did.
type Saved struct {
	Stored   bool    // false: nothing changed (the session already held the turn's ID, or every message's)
	Seq      int     // the turn's sequence number in its session (1 for the first); 0 when !Stored
	Version  Version // the session's version after the write; 0 when !Stored
	Messages int     // how many messages were stored
}

// TrimWindow returns w cut to the newest whole turns that fit both limits:
// at most maxTurns turns (none when maxTurns < 1) and, when tokenBudget >
// 0, turns whose tokens sum to at most tokenBudget. The newest turn is
// always kept (when maxTurns >= 1), even alone over the budget: a window
// then holds it alone, and its Tokens exceed tokenBudget. Its Tokens are
// recomputed; TurnCount, Summary and Unsummarized are kept.
func TrimWindow(w Window, maxTurns, tokenBudget int) Window {
	turns := w.Turns
	if len(turns) > maxTurns {
		turns = turns[len(turns)-max(maxTurns, 0):]
	}
	sum, first := 0, len(turns)
	for i := len(turns) - 1; i >= 0; i-- {
		n := turns[i].Tokens()
		if tokenBudget > 0 && sum+n > tokenBudget && i < len(turns)-1 {
			break
		}
		sum, first = sum+n, i
	}
	turns = turns[first:]
	if len(turns) == 0 {
		turns = nil
	}
	w.Turns, w.Tokens = turns, sum // the rest (TurnCount, Summary) kept
	return w
}
