// Package langchaingo keeps the chat history of a langchaingo
// (github.com/tmc/langchaingo) program in turnkeep: History is a
// schema.ChatMessageHistory over one session of a memory.Memory.
//
//	mem, err := memory.NewPersistentBufferMemory(b) // b: a backend.DataFlowBackend
//	if err != nil {
//		return err
//	}
//	h, err := langchaingo.NewHistory(mem, "session-1", langchaingo.WithWindow(10))
//	if err != nil {
//		return err
//	}
//	buf := lcmemory.NewConversationBuffer(lcmemory.WithChatHistory(h))
//	chain := chains.NewConversation(llm, buf)
//
// # Messages
//
// Each langchaingo message is one turnkeep message, and reads back as the
// message it was, field for field:
//
//	langchaingo               turnkeep Message
//	HumanChatMessage          RoleUser
//	AIChatMessage             RoleAssistant; ToolCalls as ToolCalls (ID, FunctionCall.Name, .Arguments)
//	SystemChatMessage         RoleSystem
//	ToolChatMessage           RoleTool; ID as ToolCallID
//	GenericChatMessage        by Role: "ai"/"assistant" RoleAssistant, "system" RoleSystem,
//	                          any other (e.g. "human", "narrator") RoleUser; Name as Name
//	FunctionChatMessage       RoleTool; Name as Name and as ToolCallID (the legacy API has no call IDs)
//
// turnkeep stores only its four roles, so what they cannot say goes in
// Message.Metadata, under keys that begin with "langchaingo_":
// langchaingo_type ("generic" or "function", for the two types a role
// does not tell), langchaingo_role (a GenericChatMessage's Role, as given),
// langchaingo_function_call and langchaingo_reasoning_content (an
// AIChatMessage's FunctionCall and ReasoningContent) and
// langchaingo_tool_call_types (the Types of its ToolCalls, only when one
// is not "function"). A message with no content and no tool calls, which
// turnkeep would refuse, is stored with one empty text part. A message
// another program stored reads as the type of its role, its content being
// the text of its text parts when it has no Content.
//
// turnkeep validates every message: a tool call's arguments must be JSON,
// a tool message needs the ID of its call, and text must be UTF-8 without
// NUL bytes. Such a message is refused with an error wrapping
// memory.ErrInvalidTurn, and a type of message this package does not know
// with one wrapping llms.ErrUnexpectedChatMessageType.
//
// # Turns
//
// A turnkeep turn is one exchange: what the user said and everything up to
// the answer. So a user message (a HumanChatMessage, or a
// GenericChatMessage stored as RoleUser) starts a new turn, and every
// other message is appended to the newest turn: the AI's answer, its tool
// calls, their results, and a system message in mid-conversation. Then a
// window, which holds whole turns, never separates a tool call from its
// result, and a session's turn count is its number of exchanges. A system
// prompt before the first user message opens the first turn, and that user
// message joins it: the prompt belongs to the exchange it opens, and the
// turns still count the exchanges. A message other than a user message in
// an empty session starts the first turn.
//
// AddMessage reads only the newest turn to find where a message goes;
// Messages reads only the window: WithWindow and WithTokenBudget, or by
// default the memory's own WithMaxTurns and WithTokenBudget. So the window
// holds whole turns: with tool calls it may hold more messages than twice
// its turns. None of them loads the whole session.
//
// langchaingo's ConversationWindowBuffer cuts the history to its last 2k
// messages with SetMessages after every exchange, which rewrites the
// session and drops the older turns from the store. To keep the whole
// conversation stored and send the model only the recent part, use a
// ConversationBuffer over a History with WithWindow(k) instead.
//
// # SetMessages
//
// SetMessages replaces the session, grouping the messages into turns as
// AddMessage does. It validates every turn before it changes anything, so
// input turnkeep refuses leaves the session as it was. Over a memory with
// ReplaceSession (memory.PersistentBufferMemory over either backend of
// package backend, and memory.BufferMemory) the replacement is atomic: one
// transaction, so a reader sees the old conversation or the new one, never
// a mix, and a failure leaves the old one. Over any other memory.Memory it
// falls back to a Clear and one SaveTurn per turn, each turn atomic but
// not the whole; calling it again with the same messages completes an
// interrupted replacement.
//
// A History is safe for concurrent use: its own writes are serialized.
// Writes to the same session from elsewhere interleave with them; a
// message is appended to whichever turn is newest when it is written.
package langchaingo
