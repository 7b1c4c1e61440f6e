// Package mcp serves a turnkeep memory to agents through the Model Context
// Protocol, on the official Go SDK (github.com/modelcontextprotocol/go-sdk):
// an agent searches what a user said weeks ago, lists the user's
// conversations and reads one, page by page, and (with AllowWrites) saves
// notes for later recall.
//
//	mem, err := turnkeep.Open(ctx, "sqlite:///chat.db")
//	srv, err := mcp.NewServer(mem, mcp.Scope{User: "ada"})
//	err = srv.Run(ctx, &sdkmcp.StdioTransport{})
//
// The command turnkeep-mcp (./cmd/turnkeep-mcp) does this over stdio or
// streamable HTTP, for an MCP client's configuration.
//
// # Tools
//
//	search_memory  {query, session_id?, limit?}        hits: session, turn, role, snippet, time
//	list_sessions  {cursor?, limit?}                   the user's sessions, newest first
//	get_history    {session_id, before_turn?, limit?}  a page of turns, with the summary
//	save_note      {session_id, text}                  AllowWrites only: a user-role turn
//
// Each has a JSON schema (input and output) and a description written for
// a model. Answers are bounded: at most MaxSearchHits hits and MaxPageLimit
// sessions or turns (larger limits are clamped), within OutputBudget
// tokens, message text counted as the memory's token counter counted it.
//
// # Scope
//
// A server serves one Scope, a tenant and a user, and nothing else: the
// memory is viewed through ForTenant, searches and listings are confined
// to the user's sessions, and a session ID is read only once SessionInfo
// says the user owns it. A session of another user, of another tenant or
// of no owner is "not found", worded exactly as a missing one is. Bad
// arguments are tool errors (IsError results whose text says what to
// pass instead), never protocol errors; each call ends at its deadline
// (CallTimeout) or when the client cancels it.
//
// A Server is safe for concurrent use, as the memory is.
package mcp
