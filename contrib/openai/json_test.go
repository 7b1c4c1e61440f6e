package openai

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/turnkeep/turnkeep/memory"
)

// TestWireJSON checks the JSON openai-go sends for converted messages
// against what the chat completions API expects.
func TestWireJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  memory.Message
		want string
	}{{
		"system",
		memory.Message{Role: memory.RoleSystem, Content: "Be brief.", Name: "policy"},
		`{"role":"system","content":"Be brief.","name":"policy"}`,
	}, {
		"developer",
		memory.Message{Role: memory.RoleSystem, Content: "Metric units.", Metadata: map[string]any{MetadataRole: "developer"}},
		`{"role":"developer","content":"Metric units."}`,
	}, {
		"user",
		memory.Message{Role: memory.RoleUser, Content: "Hello", Name: "ann"},
		`{"role":"user","content":"Hello","name":"ann"}`,
	}, {
		"user parts",
		memory.Message{Role: memory.RoleUser, Content: "What is this?", Parts: []memory.Part{
			{Type: "image", URL: "https://example.com/cat.png", Text: "low"},
			{Type: "image", MIMEType: "image/png", Data: []byte("png")},
			{Type: "audio", MIMEType: "audio/mpeg", Data: []byte("mp3")},
			{Type: "file", URL: "file-abc", Text: "a.pdf"},
			{Type: "file", MIMEType: "application/pdf", Data: []byte("pdf")},
		}},
		`{"role":"user","content":[
			{"type":"text","text":"What is this?"},
			{"type":"image_url","image_url":{"url":"https://example.com/cat.png","detail":"low"}},
			{"type":"image_url","image_url":{"url":"data:image/png;base64,cG5n"}},
			{"type":"input_audio","input_audio":{"data":"bXAz","format":"mp3"}},
			{"type":"file","file":{"file_id":"file-abc","filename":"a.pdf"}},
			{"type":"file","file":{"file_data":"data:application/pdf;base64,cGRm"}}
		]}`,
	}, {
		"assistant tool calls",
		memory.Message{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{
			{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`},
		}},
		`{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}`,
	}, {
		"assistant refusal",
		memory.Message{Role: memory.RoleAssistant, Parts: []memory.Part{{Type: PartRefusal, Text: "No."}}},
		`{"role":"assistant","content":[{"type":"refusal","refusal":"No."}]}`,
	}, {
		"assistant answer",
		memory.Message{Role: memory.RoleAssistant, Content: "18C and sunny.", Name: "bot"},
		`{"role":"assistant","content":"18C and sunny.","name":"bot"}`,
	}, {
		"tool",
		memory.Message{Role: memory.RoleTool, ToolCallID: "call_1", Name: "get_weather", Content: `{"temp_c":18}`},
		`{"role":"tool","tool_call_id":"call_1","content":"{\"temp_c\":18}"}`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Param(tc.msg)
			require.NoError(t, err)
			got, err := json.Marshal(p)
			require.NoError(t, err)
			assert.JSONEq(t, tc.want, string(got))
		})
	}
}

// TestFromResponse converts response messages as the API sends them.
func TestFromResponse(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       memory.Message
		err        error
		likeTheirs bool // sent back as openai-go's ChatCompletionMessage.ToParam sends it
	}{{
		name:       "answer",
		body:       `{"role":"assistant","content":"Hi!","refusal":null,"annotations":[]}`,
		want:       memory.Message{Role: memory.RoleAssistant, Content: "Hi!"},
		likeTheirs: true,
	}, {
		name: "tool calls",
		body: `{"role":"assistant","content":null,"refusal":null,"tool_calls":[
			{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
			{"id":"call_2","type":"function","function":{"name":"now","arguments":"{}"}}]}`,
		want: memory.Message{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{
			{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{ID: "call_2", Name: "now", Arguments: `{}`},
		}},
		likeTheirs: true,
	}, {
		name: "tool call without type",
		body: `{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","function":{"name":"now","arguments":"{}"}}]}`,
		want: memory.Message{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: "call_1", Name: "now", Arguments: `{}`}}},
	}, {
		name: "refusal only",
		body: `{"role":"assistant","content":null,"refusal":"I can't help with that."}`,
		want: memory.Message{Role: memory.RoleAssistant, Parts: []memory.Part{{Type: PartRefusal, Text: "I can't help with that."}}},
	}, {
		name:       "annotations are not kept",
		body:       `{"role":"assistant","content":"See example.com.","annotations":[{"type":"url_citation","url_citation":{"start_index":4,"end_index":15,"title":"Example","url":"https://example.com"}}]}`,
		want:       memory.Message{Role: memory.RoleAssistant, Content: "See example.com."},
		likeTheirs: true,
	}, {
		name: "custom tool call",
		body: `{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"custom","custom":{"name":"sql","input":"SELECT 1"}}]}`,
		err:  ErrUnsupported,
	}, {
		name: "audio",
		body: `{"role":"assistant","content":null,"audio":{"id":"audio_1","data":"AAAA","expires_at":1,"transcript":"hi"}}`,
		err:  ErrUnsupported,
	}, {
		name: "function call",
		body: `{"role":"assistant","content":null,"function_call":{"name":"f","arguments":"{}"}}`,
		err:  ErrUnsupported,
	}, {
		name: "unknown tool call type",
		body: `{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"telepathy"}]}`,
		err:  ErrInvalid,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var msg openai.ChatCompletionMessage
			require.NoError(t, json.Unmarshal([]byte(tc.body), &msg))
			got, err := FromResponse(msg)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v; want %v", err, tc.err)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)

			if !tc.likeTheirs {
				return
			}
			p, err := Param(got)
			require.NoError(t, err)
			sent, err := json.Marshal(p)
			require.NoError(t, err)
			theirs, err := json.Marshal(msg.ToParam())
			require.NoError(t, err)
			assert.JSONEq(t, string(theirs), string(sent))
		})
	}
}
