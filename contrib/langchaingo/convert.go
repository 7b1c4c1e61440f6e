package langchaingo

import (
	"fmt"
	"strings"

	"github.com/tmc/langchaingo/llms"
	"github.com/turnkeep/turnkeep/memory"
)

// The Message.Metadata keys that carry what a turnkeep message has no
// field for (see the package doc).
const (
	keyType         = "langchaingo_type"              // "generic" or "function": a type the role does not tell
	keyRole         = "langchaingo_role"              // a GenericChatMessage's Role, as given
	keyFunctionCall = "langchaingo_function_call"     // an AIChatMessage's FunctionCall: {"name", "arguments"}
	keyReasoning    = "langchaingo_reasoning_content" // an AIChatMessage's ReasoningContent
	keyToolTypes    = "langchaingo_tool_call_types"   // the Types of its ToolCalls, when one is not "function"
)

const (
	typeGeneric  = "generic"
	typeFunction = "function"
)

// defaultToolType is a ToolCall's Type when the metadata records none.
const defaultToolType = "function"

// toMessage converts a langchaingo message to the turnkeep message stored
// for it. It returns an error wrapping llms.ErrUnexpectedChatMessageType
// for a type of message it does not know, and memory.ErrInvalidTurn for a
// tool call without a function; turnkeep validates the rest when it stores
// the message.
func toMessage(cm llms.ChatMessage) (memory.Message, error) {
	var m memory.Message
	switch c := deref(cm).(type) {
	case llms.HumanChatMessage:
		m = memory.Message{Role: memory.RoleUser, Content: c.Content}
	case llms.SystemChatMessage:
		m = memory.Message{Role: memory.RoleSystem, Content: c.Content}
	case llms.ToolChatMessage:
		m = memory.Message{Role: memory.RoleTool, Content: c.Content, ToolCallID: c.ID}
	case llms.AIChatMessage:
		m = memory.Message{Role: memory.RoleAssistant, Content: c.Content}
		types, odd := make([]any, len(c.ToolCalls)), false
		for i, tc := range c.ToolCalls {
			if tc.FunctionCall == nil {
				return memory.Message{}, fmt.Errorf("%w: tool call %d has no function", memory.ErrInvalidTurn, i)
			}
			m.ToolCalls = append(m.ToolCalls, memory.ToolCall{ID: tc.ID, Name: tc.FunctionCall.Name, Arguments: tc.FunctionCall.Arguments})
			types[i], odd = tc.Type, odd || tc.Type != defaultToolType
		}
		if odd {
			setMeta(&m, keyToolTypes, types)
		}
		if f := c.FunctionCall; f != nil {
			setMeta(&m, keyFunctionCall, map[string]any{"name": f.Name, "arguments": f.Arguments})
		}
		if c.ReasoningContent != "" {
			setMeta(&m, keyReasoning, c.ReasoningContent)
		}
	case llms.GenericChatMessage:
		m = memory.Message{Role: genericRole(c.Role), Content: c.Content, Name: c.Name}
		setMeta(&m, keyType, typeGeneric)
		setMeta(&m, keyRole, c.Role)
	case llms.FunctionChatMessage:
		// The legacy function API has no call IDs: the function's name is
		// what pairs a result with its call.
		m = memory.Message{Role: memory.RoleTool, Content: c.Content, Name: c.Name, ToolCallID: c.Name}
		setMeta(&m, keyType, typeFunction)
	default:
		return memory.Message{}, fmt.Errorf("%w: %T", llms.ErrUnexpectedChatMessageType, cm)
	}
	if m.Content == "" && len(m.ToolCalls) == 0 {
		// turnkeep refuses a message with nothing in it; an empty text
		// part keeps an empty answer storable, and reads back as "".
		m.Parts = []memory.Part{{Type: "text"}}
	}
	return m, nil
}

// deref returns the message a pointer to a langchaingo message points to.
func deref(cm llms.ChatMessage) llms.ChatMessage {
	switch p := cm.(type) {
	case *llms.HumanChatMessage:
		if p != nil {
			return *p
		}
	case *llms.AIChatMessage:
		if p != nil {
			return *p
		}
	case *llms.SystemChatMessage:
		if p != nil {
			return *p
		}
	case *llms.ToolChatMessage:
		if p != nil {
			return *p
		}
	case *llms.GenericChatMessage:
		if p != nil {
			return *p
		}
	case *llms.FunctionChatMessage:
		if p != nil {
			return *p
		}
	}
	return cm
}

// genericRole is the turnkeep role a GenericChatMessage is stored with:
// the role its Role names, or RoleUser for any other speaker (a tool
// result needs the ID of its call, which a generic message lacks).
func genericRole(role string) memory.Role {
	switch strings.ToLower(role) {
	case "ai", "assistant":
		return memory.RoleAssistant
	case "system":
		return memory.RoleSystem
	}
	return memory.RoleUser
}

func setMeta(m *memory.Message, key string, v any) {
	if m.Metadata == nil {
		m.Metadata = make(map[string]any, 1)
	}
	m.Metadata[key] = v
}

// fromMessage converts a stored turnkeep message back to the langchaingo
// message toMessage made it from; a message another program stored reads
// as the type of its role. It only reads m, whose maps a memory's cache
// may share.
func fromMessage(m memory.Message) llms.ChatMessage {
	content := m.Content
	if content == "" {
		var b strings.Builder
		for _, p := range m.Parts {
			if p.Type == "text" {
				b.WriteString(p.Text)
			}
		}
		content = b.String()
	}
	switch metaString(m, keyType) {
	case typeGeneric:
		role, ok := m.Metadata[keyRole].(string)
		if !ok {
			role = string(m.Role)
		}
		return llms.GenericChatMessage{Content: content, Role: role, Name: m.Name}
	case typeFunction:
		return llms.FunctionChatMessage{Name: m.Name, Content: content}
	}
	switch m.Role {
	case memory.RoleUser:
		return llms.HumanChatMessage{Content: content}
	case memory.RoleSystem:
		return llms.SystemChatMessage{Content: content}
	case memory.RoleTool:
		return llms.ToolChatMessage{ID: m.ToolCallID, Content: content}
	case memory.RoleAssistant:
		ai := llms.AIChatMessage{Content: content, ReasoningContent: metaString(m, keyReasoning)}
		types, _ := m.Metadata[keyToolTypes].([]any)
		for i, tc := range m.ToolCalls {
			typ := defaultToolType
			if i < len(types) {
				typ, _ = types[i].(string)
			}
			ai.ToolCalls = append(ai.ToolCalls, llms.ToolCall{
				ID:           tc.ID,
				Type:         typ,
				FunctionCall: &llms.FunctionCall{Name: tc.Name, Arguments: tc.Arguments},
			})
		}
		if f, ok := m.Metadata[keyFunctionCall].(map[string]any); ok {
			name, _ := f["name"].(string)
			args, _ := f["arguments"].(string)
			ai.FunctionCall = &llms.FunctionCall{Name: name, Arguments: args}
		}
		return ai
	}
	// turnkeep stores no other role; should a future one appear, say it.
	return llms.GenericChatMessage{Content: content, Role: string(m.Role), Name: m.Name}
}

func metaString(m memory.Message, key string) string {
	s, _ := m.Metadata[key].(string)
	return s
}
