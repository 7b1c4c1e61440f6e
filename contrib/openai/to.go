package openai

import (
	"fmt"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/turnkeep/turnkeep/memory"
)

// MetadataRole is the Message.Metadata key that marks a memory.RoleSystem
// message as OpenAI's developer role: FromParam sets it to "developer"
// for a developer message, and Param sends a system message with it so.
const MetadataRole = "openai.role"

// SummaryPrefix begins the system message that carries a window's
// summary (Messages).
const SummaryPrefix = "Summary of the conversation before the messages below: "

// Messages converts the window's messages, oldest first, to a chat
// completion request's messages; a window with a summary
// (memory.WithSummarizer) starts with a system message holding it,
// SummaryPrefix first. It stops at the first message Param cannot
// convert, returning an error naming its position and ID.
func Messages(w memory.Window) ([]openai.ChatCompletionMessageParamUnion, error) {
	msgs := w.Messages()
	out := make([]openai.ChatCompletionMessageParamUnion, 0, len(msgs)+1)
	if w.Summary != nil && w.Summary.Text != "" {
		out = append(out, openai.SystemMessage(SummaryPrefix+w.Summary.Text))
	}
	for i, m := range msgs {
		p, err := Param(m)
		if err != nil {
			return nil, fmt.Errorf("message %d (id %q): %w", i, m.ID, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Param converts one message to its chat completions form, as the package
// documentation's table says. Its ID, Tokens and Metadata (but
// MetadataRole) are not sent, nor the Name of a tool message.
//
// Errors wrap ErrUnsupported for what chat completions cannot carry and
// ErrInvalid for a message incomplete for its role.
func Param(m memory.Message) (openai.ChatCompletionMessageParamUnion, error) {
	var none openai.ChatCompletionMessageParamUnion
	developer := false
	if v, ok := m.Metadata[MetadataRole]; ok {
		if m.Role != memory.RoleSystem || v != "developer" {
			return none, fmt.Errorf("%w: %s message with metadata %s=%v; only a system message may be marked \"developer\"", ErrUnsupported, m.Role, MetadataRole, v)
		}
		developer = true
	}
	if len(m.ToolCalls) > 0 && m.Role != memory.RoleAssistant {
		return none, fmt.Errorf("%w: %s message with tool calls", ErrInvalid, m.Role)
	}
	if (m.ToolCallID != "") != (m.Role == memory.RoleTool) {
		return none, fmt.Errorf("%w: %s message with tool call id %q; a tool message, and only it, answers a tool call", ErrInvalid, m.Role, m.ToolCallID)
	}
	var name param.Opt[string]
	if m.Name != "" {
		name = openai.String(m.Name)
	}

	switch m.Role {
	case memory.RoleSystem:
		parts, err := textParts(m)
		if err != nil {
			return none, err
		}
		if developer {
			d := openai.ChatCompletionDeveloperMessageParam{Name: name}
			d.Content.OfArrayOfContentParts = parts
			if parts == nil {
				d.Content.OfString = openai.String(m.Content)
			}
			return openai.ChatCompletionMessageParamUnion{OfDeveloper: &d}, nil
		}
		s := openai.ChatCompletionSystemMessageParam{Name: name}
		s.Content.OfArrayOfContentParts = parts
		if parts == nil {
			s.Content.OfString = openai.String(m.Content)
		}
		return openai.ChatCompletionMessageParamUnion{OfSystem: &s}, nil

	case memory.RoleUser:
		u := openai.ChatCompletionUserMessageParam{Name: name}
		if len(m.Parts) == 0 {
			u.Content.OfString = openai.String(m.Content)
			return openai.ChatCompletionMessageParamUnion{OfUser: &u}, nil
		}
		parts := make([]openai.ChatCompletionContentPartUnionParam, 0, len(m.Parts)+1)
		if m.Content != "" {
			parts = append(parts, openai.TextContentPart(m.Content))
		}
		for j, p := range m.Parts {
			c, err := userPart(j, p)
			if err != nil {
				return none, err
			}
			parts = append(parts, c)
		}
		u.Content.OfArrayOfContentParts = parts
		return openai.ChatCompletionMessageParamUnion{OfUser: &u}, nil

	case memory.RoleAssistant:
		a := openai.ChatCompletionAssistantMessageParam{Name: name}
		switch {
		case len(m.Parts) > 0:
			parts := make([]openai.ChatCompletionAssistantMessageParamContentArrayOfContentPartUnion, 0, len(m.Parts)+1)
			if m.Content != "" {
				parts = append(parts, openai.ChatCompletionAssistantMessageParamContentArrayOfContentPartUnion{
					OfText: &openai.ChatCompletionContentPartTextParam{Text: m.Content},
				})
			}
			for j, p := range m.Parts {
				c, err := assistantPart(j, p)
				if err != nil {
					return none, err
				}
				parts = append(parts, c)
			}
			a.Content.OfArrayOfContentParts = parts
		case m.Content != "" || len(m.ToolCalls) == 0:
			a.Content.OfString = openai.String(m.Content)
		}
		for _, c := range m.ToolCalls {
			a.ToolCalls = append(a.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
				OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
					ID:       c.ID,
					Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: c.Name, Arguments: c.Arguments},
				},
			})
		}
		return openai.ChatCompletionMessageParamUnion{OfAssistant: &a}, nil

	case memory.RoleTool:
		parts, err := textParts(m)
		if err != nil {
			return none, err
		}
		t := openai.ChatCompletionToolMessageParam{ToolCallID: m.ToolCallID}
		t.Content.OfArrayOfContentParts = parts
		if parts == nil {
			t.Content.OfString = openai.String(m.Content)
		}
		return openai.ChatCompletionMessageParamUnion{OfTool: &t}, nil
	}
	return none, fmt.Errorf("%w: role %q", ErrUnsupported, m.Role)
}

// textParts converts the content of a message whose role takes text parts
// only: nil when it has no parts (its Content goes as a string), else its
// Content as the first text part, if any, then its parts.
func textParts(m memory.Message) ([]openai.ChatCompletionContentPartTextParam, error) {
	if len(m.Parts) == 0 {
		return nil, nil
	}
	out := make([]openai.ChatCompletionContentPartTextParam, 0, len(m.Parts)+1)
	if m.Content != "" {
		out = append(out, openai.ChatCompletionContentPartTextParam{Text: m.Content})
	}
	for j, p := range m.Parts {
		t, err := textPart(j, p)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
