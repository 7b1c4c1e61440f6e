package openai

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/memory"
)

var (
	png = []byte("\x89PNG\r\n\x1a\n fake image")
	wav = []byte("RIFF fake wave")
	pdf = []byte("%PDF-1.7 fake")
)

// canonical holds messages in the form FromParam gives back: every role,
// names, tool calls, every part type.
var canonical = []struct {
	name string
	msg  memory.Message
}{
	{"system", memory.Message{Role: memory.RoleSystem, Content: "Be brief.", Name: "policy"}},
	{"system text parts", memory.Message{Role: memory.RoleSystem, Content: "Be brief.", Parts: []memory.Part{{Type: "text", Text: "Be kind."}}}},
	{"developer", memory.Message{Role: memory.RoleSystem, Content: "Use metric units.", Name: "dev", Metadata: map[string]any{MetadataRole: "developer"}}},
	{"user", memory.Message{Role: memory.RoleUser, Content: "Hello", Name: "ann"}},
	{"user empty first text part", memory.Message{Role: memory.RoleUser, Parts: []memory.Part{{Type: "text"}, {Type: "text", Text: "b"}}}},
	{"user parts", memory.Message{Role: memory.RoleUser, Content: "What is in these?", Name: "ann", Parts: []memory.Part{
		{Type: "text", Text: "Look closely."},
		{Type: "image", URL: "https://example.com/cat.png", Text: "low"},
		{Type: "image", URL: "https://example.com/dog.png"},
		{Type: "image", MIMEType: "image/png", Data: png, Text: "high"},
		{Type: "audio", MIMEType: "audio/wav", Data: wav},
		{Type: "audio", MIMEType: "audio/mpeg", Data: []byte("ID3 fake mp3")},
		{Type: "file", URL: "file-abc123", Text: "report.pdf"},
		{Type: "file", MIMEType: "application/pdf", Data: pdf, Text: "inline.pdf"},
		{Type: "file", Data: pdf},
	}}},
	{"user parts only", memory.Message{Role: memory.RoleUser, Parts: []memory.Part{{Type: "image", URL: "https://example.com/cat.png"}}}},
	{"assistant", memory.Message{Role: memory.RoleAssistant, Content: "Hi!", Name: "bot"}},
	{"assistant tool calls", memory.Message{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{
		{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`},
		{ID: "call_2", Name: "now"},
	}}},
	{"assistant content and tool call", memory.Message{Role: memory.RoleAssistant, Content: "Let me look.", ToolCalls: []memory.ToolCall{
		{ID: "call_1", Name: "get_weather", Arguments: `{"city": "Paris"}`},
	}}},
	{"assistant refusal", memory.Message{Role: memory.RoleAssistant, Parts: []memory.Part{{Type: PartRefusal, Text: "I can't help with that."}}}},
	{"assistant text and refusal parts", memory.Message{Role: memory.RoleAssistant, Content: "Part of it:", Parts: []memory.Part{
		{Type: "text", Text: "this"}, {Type: PartRefusal, Text: "not that"},
	}}},
	{"tool", memory.Message{Role: memory.RoleTool, ToolCallID: "call_1", Content: `{"temp_c":18}`}},
	{"tool text parts", memory.Message{Role: memory.RoleTool, ToolCallID: "call_1", Content: "18C", Parts: []memory.Part{{Type: "text", Text: "sunny"}}}},
}

// TestRoundTrip converts each message to a param and back, directly and
// through the param's wire JSON.
func TestRoundTrip(t *testing.T) {
	for _, tc := range canonical {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Param(tc.msg)
			require.NoError(t, err)
			got, err := FromParam(p)
			require.NoError(t, err)
			assert.Equal(t, tc.msg, got)

			data, err := json.Marshal(p)
			require.NoError(t, err)
			var wire openai.ChatCompletionMessageParamUnion
			require.NoError(t, json.Unmarshal(data, &wire))
			got, err = FromParam(wire)
			require.NoError(t, err, "wire JSON: %s", data)
			assert.Equal(t, tc.msg, got, "through wire JSON %s", data)
		})
	}
}

// TestRoundTripStored saves every message in a turn, loads the window and
// converts it there and back.
func TestRoundTripStored(t *testing.T) {
	ctx := context.Background()
	m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend())
	require.NoError(t, err)
	var msgs []memory.Message
	for _, tc := range canonical {
		msgs = append(msgs, tc.msg)
	}
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "t", Messages: msgs}))
	w, err := m.LoadContext(ctx, "s")
	require.NoError(t, err)
	params, err := Messages(w)
	require.NoError(t, err)
	loaded := w.Messages()
	require.Len(t, params, len(loaded))
	for i, p := range params {
		got, err := FromParam(p)
		require.NoError(t, err)
		want := loaded[i]
		want.ID, want.Tokens = "", 0
		assert.Equal(t, want, got, "message %d (%s)", i, canonical[i].name)
	}
}

// TestNormalForms covers what does not come back as given.
func TestNormalForms(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out memory.Message
	}{{
		"first text part becomes content",
		memory.Message{Role: memory.RoleUser, Parts: []memory.Part{{Type: "text", Text: "a"}, {Type: "image", URL: "https://x/y.png"}}},
		memory.Message{Role: memory.RoleUser, Content: "a", Parts: []memory.Part{{Type: "image", URL: "https://x/y.png"}}},
	}, {
		"data URL becomes data",
		memory.Message{Role: memory.RoleUser, Content: "a", Parts: []memory.Part{
			{Type: "image", URL: dataURL("image/png", png)},
			{Type: "audio", URL: dataURL("audio/wav", wav)},
			{Type: "file", URL: dataURL("application/pdf", pdf)},
		}},
		memory.Message{Role: memory.RoleUser, Content: "a", Parts: []memory.Part{
			{Type: "image", MIMEType: "image/png", Data: png},
			{Type: "audio", MIMEType: "audio/wav", Data: wav},
			{Type: "file", MIMEType: "application/pdf", Data: pdf},
		}},
	}, {
		"audio MIME type",
		memory.Message{Role: memory.RoleUser, Parts: []memory.Part{{Type: "audio", MIMEType: "audio/x-wav", Data: wav}}},
		memory.Message{Role: memory.RoleUser, Parts: []memory.Part{{Type: "audio", MIMEType: "audio/wav", Data: wav}}},
	}, {
		"not sent: ID, tokens, metadata, a tool message's name",
		memory.Message{ID: "m1", Tokens: 7, Role: memory.RoleTool, ToolCallID: "c", Name: "get_weather", Content: "18C", Metadata: map[string]any{"k": "v"}},
		memory.Message{Role: memory.RoleTool, ToolCallID: "c", Content: "18C"},
	}, {
		"a percent-encoded data URL stays a URL",
		memory.Message{Role: memory.RoleUser, Parts: []memory.Part{{Type: "image", URL: "data:image/svg+xml,%3Csvg%2F%3E"}}},
		memory.Message{Role: memory.RoleUser, Parts: []memory.Part{{Type: "image", URL: "data:image/svg+xml,%3Csvg%2F%3E"}}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Param(tc.in)
			require.NoError(t, err)
			got, err := FromParam(p)
			require.NoError(t, err)
			assert.Equal(t, tc.out, got)
		})
	}
}

// TestParamErrors lists what Param refuses rather than drop.
func TestParamErrors(t *testing.T) {
	user := func(parts ...memory.Part) memory.Message {
		return memory.Message{Role: memory.RoleUser, Content: "x", Parts: parts}
	}
	for _, tc := range []struct {
		name string
		msg  memory.Message
		want error
	}{
		{"unknown role", memory.Message{Role: "critic", Content: "x"}, ErrUnsupported},
		{"own part type", user(memory.Part{Type: "thinking", Text: "hmm"}), ErrUnsupported},
		{"image in a system message", memory.Message{Role: memory.RoleSystem, Parts: []memory.Part{{Type: "image", URL: "https://x/y.png"}}}, ErrUnsupported},
		{"image in an assistant message", memory.Message{Role: memory.RoleAssistant, Parts: []memory.Part{{Type: "image", URL: "https://x/y.png"}}}, ErrUnsupported},
		{"refusal in a user message", user(memory.Part{Type: PartRefusal, Text: "no"}), ErrUnsupported},
		{"text part with a URL", user(memory.Part{Type: "text", Text: "a", URL: "https://x"}), ErrUnsupported},
		{"image URL with a MIME type", user(memory.Part{Type: "image", URL: "https://x/y.png", MIMEType: "image/png"}), ErrUnsupported},
		{"image with URL and data", user(memory.Part{Type: "image", URL: "https://x/y.png", Data: png, MIMEType: "image/png"}), ErrInvalid},
		{"inline image without MIME type", user(memory.Part{Type: "image", Data: png}), ErrInvalid},
		{"image with nothing", user(memory.Part{Type: "image"}), ErrInvalid},
		{"audio by URL", user(memory.Part{Type: "audio", URL: "https://x/a.wav"}), ErrUnsupported},
		{"audio with text", user(memory.Part{Type: "audio", Data: wav, MIMEType: "audio/wav", Text: "transcript"}), ErrUnsupported},
		{"audio of another format", user(memory.Part{Type: "audio", Data: wav, MIMEType: "audio/ogg"}), ErrUnsupported},
		{"audio with nothing", user(memory.Part{Type: "audio", MIMEType: "audio/wav"}), ErrInvalid},
		{"file by URL", user(memory.Part{Type: "file", URL: "https://x/a.pdf"}), ErrUnsupported},
		{"file ID with a MIME type", user(memory.Part{Type: "file", URL: "file-1", MIMEType: "application/pdf"}), ErrUnsupported},
		{"file with nothing", user(memory.Part{Type: "file", Text: "a.pdf"}), ErrInvalid},
		{"tool message without tool call ID", memory.Message{Role: memory.RoleTool, Content: "x"}, ErrInvalid},
		{"tool call ID on a user message", memory.Message{Role: memory.RoleUser, Content: "x", ToolCallID: "c"}, ErrInvalid},
		{"tool calls on a user message", memory.Message{Role: memory.RoleUser, Content: "x", ToolCalls: []memory.ToolCall{{ID: "c", Name: "f"}}}, ErrInvalid},
		{"developer mark on a user message", memory.Message{Role: memory.RoleUser, Content: "x", Metadata: map[string]any{MetadataRole: "developer"}}, ErrUnsupported},
		{"other role mark", memory.Message{Role: memory.RoleSystem, Content: "x", Metadata: map[string]any{MetadataRole: "critic"}}, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Param(tc.msg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
		})
	}
}

func TestMessagesNamesTheFailingMessage(t *testing.T) {
	w := memory.Window{Turns: []memory.Turn{{Messages: []memory.Message{
		{ID: "t/0", Role: memory.RoleUser, Content: "hi"},
		{ID: "t/1", Role: memory.RoleUser, Parts: []memory.Part{{Type: "thinking"}}},
	}}}}
	params, err := Messages(w)
	require.ErrorIs(t, err, ErrUnsupported)
	assert.Nil(t, params)
	assert.Contains(t, err.Error(), `message 1 (id "t/1")`)
}

// TestFromParamErrors lists what FromParam refuses rather than drop.
func TestFromParamErrors(t *testing.T) {
	userPart := func(p openai.ChatCompletionContentPartUnionParam) openai.ChatCompletionMessageParamUnion {
		return openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{p})
	}
	custom := openai.AssistantMessage("")
	custom.OfAssistant.ToolCalls = []openai.ChatCompletionMessageToolCallUnionParam{{
		OfCustom: &openai.ChatCompletionMessageCustomToolCallParam{ID: "c", Custom: openai.ChatCompletionMessageCustomToolCallCustomParam{Name: "sql", Input: "SELECT 1"}},
	}}
	audio := openai.AssistantMessage("")
	audio.OfAssistant.Audio.ID = "audio_1"
	noCall := openai.AssistantMessage("")
	noCall.OfAssistant.ToolCalls = []openai.ChatCompletionMessageToolCallUnionParam{{}}
	for _, tc := range []struct {
		name string
		p    openai.ChatCompletionMessageParamUnion
		want error
	}{
		{"empty union", openai.ChatCompletionMessageParamUnion{}, ErrInvalid},
		{"function role", openai.ChatCompletionMessageParamOfFunction("x", "f"), ErrUnsupported},
		{"custom tool call", custom, ErrUnsupported},
		{"assistant audio", audio, ErrUnsupported},
		{"tool call with no variant", noCall, ErrInvalid},
		{"empty part union", userPart(openai.ChatCompletionContentPartUnionParam{}), ErrInvalid},
		{"audio not base64", userPart(openai.InputAudioContentPart(openai.ChatCompletionContentPartInputAudioInputAudioParam{Data: "not base64!", Format: "wav"})), ErrInvalid},
		{"audio of another format", userPart(openai.InputAudioContentPart(openai.ChatCompletionContentPartInputAudioInputAudioParam{Data: "AAAA", Format: "ogg"})), ErrUnsupported},
		{"file data not base64", userPart(openai.FileContentPart(openai.ChatCompletionContentPartFileFileParam{FileData: openai.String("%%%")})), ErrInvalid},
		{"file ID with a colon", userPart(openai.FileContentPart(openai.ChatCompletionContentPartFileFileParam{FileID: openai.String("s3://bucket/a.pdf")})), ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromParam(tc.p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
		})
	}
}

// TestParamRoundTrip converts params built with openai-go's constructors
// to memory and back, comparing the wire JSON.
func TestParamRoundTrip(t *testing.T) {
	withName := openai.UserMessage("hi")
	withName.OfUser.Name = openai.String("ann")
	refusal := openai.AssistantMessage("Here is part:")
	refusal.OfAssistant.Refusal = openai.String("not the rest")
	for _, tc := range []struct {
		name string
		p    openai.ChatCompletionMessageParamUnion
		want string // the wire JSON back, when it differs
	}{
		{"system", openai.SystemMessage("Be brief."), ""},
		{"developer", openai.DeveloperMessage([]openai.ChatCompletionContentPartTextParam{{Text: "a"}, {Text: "b"}}), ""},
		{"user", withName, ""},
		{"user parts", openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.TextContentPart("What is this?"),
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: dataURL("image/png", png), Detail: "low"}),
			openai.InputAudioContentPart(openai.ChatCompletionContentPartInputAudioInputAudioParam{Data: "UklGRg==", Format: "wav"}),
			openai.FileContentPart(openai.ChatCompletionContentPartFileFileParam{FileID: openai.String("file-1"), Filename: openai.String("a.pdf")}),
			openai.FileContentPart(openai.ChatCompletionContentPartFileFileParam{FileData: openai.String("JVBERg==")}),
		}), ""},
		{"assistant", openai.AssistantMessage("Hello"), ""},
		{"assistant refusal field", refusal, `{"role":"assistant","content":[{"type":"text","text":"Here is part:"},{"type":"refusal","refusal":"not the rest"}]}`},
		{"tool", openai.ToolMessage(`{"temp_c":18}`, "call_1"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := FromParam(tc.p)
			require.NoError(t, err)
			back, err := Param(m)
			require.NoError(t, err)
			want, err := json.Marshal(tc.p)
			require.NoError(t, err)
			if tc.want != "" {
				want = []byte(tc.want)
			}
			got, err := json.Marshal(back)
			require.NoError(t, err)
			assert.JSONEq(t, string(want), string(got))
		})
	}
}
