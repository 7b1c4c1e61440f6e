// Package openai converts between the memory package's messages and the
// chat completions messages of github.com/openai/openai-go/v3, so that an
// application's loop reads: load the window, call the model with it, save
// what came back.
//
// Import it under another name beside openai-go, whose package is also
// named openai:
//
//	import (
//		"github.com/openai/openai-go/v3"
//		tkopenai "github.com/turnkeep/turnkeep/contrib/openai"
//	)
//
//	// The user's message is saved (SaveTurn) before the model is called.
//	w, err := mem.LoadContext(ctx, session)
//	msgs, err := tkopenai.Messages(w)
//	resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: openai.ChatModelGPT5_4Mini, Messages: msgs, Tools: tools})
//	reply, err := tkopenai.FromResponse(resp.Choices[0].Message)
//	reply.ID = turnID + "/reply-1" // a retried append stores it once
//	err = mem.AppendMessages(ctx, session, turnID, reply) // then the tool results, and call again
//
// Messages and Param convert memory to chat completions; FromParam and
// FromResponse convert back. The mapping:
//
//	memory.Message                      chat completions
//	RoleSystem                          system message
//	RoleSystem, Metadata[MetadataRole]  developer message
//	  = "developer"
//	RoleUser                            user message
//	RoleAssistant                       assistant message
//	RoleTool                            tool message
//	Content, no Parts                   content as a string (none for an
//	                                    assistant's tool calls without text)
//	Content and Parts                   content as an array of parts: Content
//	                                    as a text part (when not empty), then
//	                                    the parts
//	Name                                name (not sent for a tool message,
//	                                    which has none)
//	ToolCalls {ID, Name, Arguments}     tool_calls of type function
//	                                    {id, function {name, arguments}}
//	ToolCallID                          tool_call_id
//	Part "text" {Text}                  text part
//	Part "image" {URL, Text}            image_url part {url, detail}
//	Part "image" {Data, MIMEType, Text} image_url part, url a base64 data URL
//	Part "audio" {Data, MIMEType}       input_audio part {data in base64,
//	                                    format "wav" (audio/wav) or "mp3"
//	                                    (audio/mpeg)}
//	Part "file" {URL, Data, MIMEType,   file part {file_id, file_data
//	  Text}                             (a base64 data URL, or bare base64
//	                                    without MIMEType), filename}
//	Part PartRefusal {Text}             refusal part (assistant)
//	ID, Tokens, other Metadata          not sent
//
// System, developer and tool messages take text parts only; assistant
// messages text and refusal parts; user messages text, image, audio and
// file parts. Anything else, a part field the table does not name for its
// type (chat completions would drop it), audio given by a URL other than
// a base64 data URL, or a file by a URL rather than an ID or data, is an
// error wrapping ErrUnsupported, never dropped.
//
// Coming back, a response's refusal becomes a PartRefusal part (a
// refusal-only answer is stored, and sent back as a refusal content
// part), an assistant param's refusal field too. These are refused with
// ErrUnsupported, as memory has no place for them: a function-role
// message, a custom tool call, assistant audio and a deprecated
// function_call. Annotations (URL citations) and prompt cache breakpoints
// are not kept: chat completions take neither back as conversation.
// Tool call arguments are kept verbatim; arguments that are not valid
// JSON convert, and memory refuses them on save with
// memory.ErrInvalidTurn.
//
// A message converts to chat completions and back unchanged, but for what
// the table says is not sent and two normal forms: a message with parts
// and no Content whose first part is a non-empty text part comes back
// with that text as its Content; an inline image, audio or file given as
// a data URL in URL comes back as Data and MIMEType (an audio MIME type
// as audio/wav or audio/mpeg). A param converts to memory and back
// unchanged, but for what the paragraph above says is not kept and an
// assistant's refusal field, which comes back as a refusal content part.
//
// The functions hold no state and are safe for concurrent use.
package openai
