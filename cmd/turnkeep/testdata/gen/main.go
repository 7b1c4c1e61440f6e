// Command gen writes the copy test's source database through the library:
// N messages in three tenants, sessions of 50 turns of 4 messages (a user
// message, a tool call, its result, the answer), owners, titles and
// metadata on every other session, and one empty session. The test builds
// it without -race, so that making 100,000 messages takes seconds.
//
//	go run ./cmd/turnkeep/testdata/gen sqlite:///src.db 100000
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	_ "modernc.org/sqlite"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: gen URL MESSAGES")
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		log.Fatal(err)
	}
	if err := gen(context.Background(), os.Args[1], n); err != nil {
		log.Fatal(err)
	}
}

func gen(ctx context.Context, url string, n int) error {
	db, err := dataflow.Open(ctx, url)
	if err != nil {
		return err
	}
	defer db.Close()
	b, err := backend.NewDataFlowBackend(db, backend.WithSearchIndex(false))
	if err != nil {
		return err
	}
	m, err := memory.NewPersistentBufferMemory(b, memory.WithCacheTTL(0))
	if err != nil {
		return err
	}
	tenants := []string{"", "acme", "globex"}
	const turnsPer = 50
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i*4 < n; i++ {
		s := i / turnsPer
		tm := m.ForTenant(tenants[s%len(tenants)])
		id := fmt.Sprintf("s%04d", s)
		if i%turnsPer == 0 && s%2 == 0 {
			if err := tm.CreateSession(ctx, memory.SessionInfo{ID: id, User: fmt.Sprintf("user%d", s%7),
				Title: "chat " + id, Metadata: map[string]any{"n": s}}); err != nil {
				return err
			}
		}
		call := fmt.Sprintf("call-%d", i)
		if err := tm.SaveTurn(ctx, id, memory.Turn{ID: fmt.Sprintf("t%06d", i), Timestamp: ts.Add(time.Duration(i) * time.Second),
			Messages: []memory.Message{
				{Role: memory.RoleUser, Content: fmt.Sprintf("question %d: what is %d*7?", i, i)},
				{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: call, Name: "calculator", Arguments: fmt.Sprintf(`{"expression":"%d*7"}`, i)}}},
				{Role: memory.RoleTool, ToolCallID: call, Content: fmt.Sprint(i * 7)},
				{Role: memory.RoleAssistant, Content: fmt.Sprintf("It is %d.", i*7)},
			}}); err != nil {
			return err
		}
	}
	// An empty session, which a copy must carry too.
	return m.ForTenant("acme").CreateSession(ctx, memory.SessionInfo{ID: "empty", User: "nobody"})
}
