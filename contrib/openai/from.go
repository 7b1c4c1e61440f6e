package openai

import (
	"fmt"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/turnkeep/turnkeep/memory"
)

// FromParam converts a chat completion request message to a
// memory.Message, the inverse of Param: Param(FromParam(p)) sends what p
// does. The message has no ID; give it one before AppendMessages so that
// a retried append stores it once.
//
// Errors wrap ErrUnsupported for a function-role message, a custom tool
// call, assistant audio or a deprecated function_call, and ErrInvalid for
// a union or part with no variant set (as param.Override makes) and
// inline data that is not standard base64.
func FromParam(p openai.ChatCompletionMessageParamUnion) (memory.Message, error) {
	var m memory.Message
	var err error
	switch {
	case p.OfSystem != nil:
		m = memory.Message{Role: memory.RoleSystem, Name: p.OfSystem.Name.Or("")}
		m.Content, m.Parts = fromText(p.OfSystem.Content.OfString, p.OfSystem.Content.OfArrayOfContentParts)
	case p.OfDeveloper != nil:
		m = memory.Message{Role: memory.RoleSystem, Name: p.OfDeveloper.Name.Or(""), Metadata: map[string]any{MetadataRole: "developer"}}
		m.Content, m.Parts = fromText(p.OfDeveloper.Content.OfString, p.OfDeveloper.Content.OfArrayOfContentParts)
	case p.OfUser != nil:
		m = memory.Message{Role: memory.RoleUser, Name: p.OfUser.Name.Or(""), Content: p.OfUser.Content.OfString.Or("")}
		for j, u := range p.OfUser.Content.OfArrayOfContentParts {
			part, err := fromUserPart(j, u)
			if err != nil {
				return memory.Message{}, err
			}
			m.Parts = append(m.Parts, part)
		}
		m.Content, m.Parts = splitContent(m.Content, m.Parts)
	case p.OfAssistant != nil:
		m, err = fromAssistant(p.OfAssistant)
	case p.OfTool != nil:
		m = memory.Message{Role: memory.RoleTool, ToolCallID: p.OfTool.ToolCallID}
		m.Content, m.Parts = fromText(p.OfTool.Content.OfString, p.OfTool.Content.OfArrayOfContentParts)
	case p.OfFunction != nil:
		return memory.Message{}, fmt.Errorf("%w: a function-role message (deprecated; use tool messages)", ErrUnsupported)
	default:
		return memory.Message{}, fmt.Errorf("%w: no message variant set", ErrInvalid)
	}
	if err != nil {
		return memory.Message{}, err
	}
	return m, nil
}

// FromResponse converts the message of a chat completion's choice to an
// assistant memory.Message: its content, its refusal as a PartRefusal
// part, its function tool calls. Annotations (URL citations) are not
// kept. The message has no ID; give it one before AppendMessages.
//
// Errors wrap ErrUnsupported for a custom tool call, an audio response or
// a deprecated function_call, and ErrInvalid for a tool call of no known
// type.
func FromResponse(msg openai.ChatCompletionMessage) (memory.Message, error) {
	m := memory.Message{Role: memory.RoleAssistant, Content: msg.Content}
	if msg.Refusal != "" {
		m.Parts = []memory.Part{{Type: PartRefusal, Text: msg.Refusal}}
	}
	if msg.Audio.ID != "" {
		return memory.Message{}, fmt.Errorf("%w: an audio response (id %q)", ErrUnsupported, msg.Audio.ID)
	}
	//lint:ignore SA1019 a deprecated function call must be refused, not dropped
	if fc := msg.FunctionCall; fc.Name != "" || fc.Arguments != "" {
		return memory.Message{}, fmt.Errorf("%w: a function_call (deprecated; use tool calls)", ErrUnsupported)
	}
	for i, c := range msg.ToolCalls {
		switch c.Type {
		case "function", "": // "" from servers that leave the type out
			m.ToolCalls = append(m.ToolCalls, memory.ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
		case "custom":
			return memory.Message{}, fmt.Errorf("%w: tool call %d is a custom tool call", ErrUnsupported, i)
		default:
			return memory.Message{}, fmt.Errorf("%w: tool call %d has type %q", ErrInvalid, i, c.Type)
		}
	}
	return m, nil
}

// fromAssistant converts an assistant message param.
func fromAssistant(a *openai.ChatCompletionAssistantMessageParam) (memory.Message, error) {
	m := memory.Message{Role: memory.RoleAssistant, Name: a.Name.Or(""), Content: a.Content.OfString.Or("")}
	if a.Audio.ID != "" {
		return memory.Message{}, fmt.Errorf("%w: assistant audio (id %q)", ErrUnsupported, a.Audio.ID)
	}
	//lint:ignore SA1019 a deprecated function call must be refused, not dropped
	if fc := a.FunctionCall; fc.Name != "" || fc.Arguments != "" {
		return memory.Message{}, fmt.Errorf("%w: a function_call (deprecated; use tool calls)", ErrUnsupported)
	}
	for j, c := range a.Content.OfArrayOfContentParts {
		switch {
		case c.OfText != nil:
			m.Parts = append(m.Parts, memory.Part{Type: partText, Text: c.OfText.Text})
		case c.OfRefusal != nil:
			m.Parts = append(m.Parts, memory.Part{Type: PartRefusal, Text: c.OfRefusal.Refusal})
		default:
			return memory.Message{}, fmt.Errorf("%w: part %d has no variant set", ErrInvalid, j)
		}
	}
	m.Content, m.Parts = splitContent(m.Content, m.Parts)
	if r := a.Refusal.Or(""); r != "" {
		m.Parts = append(m.Parts, memory.Part{Type: PartRefusal, Text: r})
	}
	for i, c := range a.ToolCalls {
		switch {
		case c.OfFunction != nil:
			f := c.OfFunction
			m.ToolCalls = append(m.ToolCalls, memory.ToolCall{ID: f.ID, Name: f.Function.Name, Arguments: f.Function.Arguments})
		case c.OfCustom != nil:
			return memory.Message{}, fmt.Errorf("%w: tool call %d is a custom tool call", ErrUnsupported, i)
		default:
			return memory.Message{}, fmt.Errorf("%w: tool call %d has no variant set", ErrInvalid, i)
		}
	}
	return m, nil
}

// fromText converts the content of a role that takes text parts only.
func fromText(s param.Opt[string], texts []openai.ChatCompletionContentPartTextParam) (string, []memory.Part) {
	if len(texts) == 0 {
		return s.Or(""), nil
	}
	parts := make([]memory.Part, len(texts))
	for j, t := range texts {
		parts[j] = memory.Part{Type: partText, Text: t.Text}
	}
	return splitContent("", parts)
}

// splitContent makes content parts a message's Content and Parts as Param
// expects them: a first text part that is not empty becomes the Content.
// Empty parts are nil.
func splitContent(content string, parts []memory.Part) (string, []memory.Part) {
	if content == "" && len(parts) > 0 && parts[0].Type == partText && parts[0].Text != "" {
		content, parts = parts[0].Text, parts[1:]
	}
	if len(parts) == 0 {
		parts = nil
	}
	return content, parts
}
