package tiktoken_test

import (
	"fmt"

	"github.com/turnkeep/turnkeep/contrib/tiktoken"
	"github.com/turnkeep/turnkeep/memory"
)

func Example() {
	c, err := tiktoken.ForModel("gpt-4o-mini")
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Encoding(), c.Count("hello world"))

	m := memory.Message{Role: memory.RoleUser, Content: "hello world"}
	fmt.Println(c.CountTokens(m)) // 2 for the content, 1 for the role, MessageTokens

	// A memory counts with it when given as an option.
	_ = memory.NewBufferMemory(memory.WithTokenCounter(c), memory.WithTokenBudget(8000))
	// Output:
	// o200k_base 2
	// 6
}
