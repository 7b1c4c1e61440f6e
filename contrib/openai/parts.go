package openai

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/turnkeep/turnkeep/memory"
)

// The part types of memory.Part that this package maps.
const (
	partText  = "text"
	partImage = "image"
	partAudio = "audio"
	partFile  = "file"

	// PartRefusal is the memory.Part type of an assistant's refusal: its
	// Text is what the model said in refusing. FromParam and FromResponse
	// make one from a refusal; Param sends it back as a refusal content
	// part.
	PartRefusal = "refusal"
)

// stray returns an error naming the first field of p that is set and not
// in uses, which chat completions would drop.
func stray(j int, p memory.Part, uses ...string) error {
	for _, f := range [...]struct {
		name string
		set  bool
	}{{"Text", p.Text != ""}, {"URL", p.URL != ""}, {"MIMEType", p.MIMEType != ""}, {"Data", len(p.Data) > 0}} {
		if f.set && !slices.Contains(uses, f.name) {
			return fmt.Errorf("%w: part %d (%s) sets %s, which chat completions have no place for", ErrUnsupported, j, p.Type, f.name)
		}
	}
	return nil
}

// textPart converts a part of a message whose role takes text parts only.
func textPart(j int, p memory.Part) (openai.ChatCompletionContentPartTextParam, error) {
	if p.Type != partText {
		return openai.ChatCompletionContentPartTextParam{}, fmt.Errorf("%w: part %d has type %q; this role takes text parts only", ErrUnsupported, j, p.Type)
	}
	if err := stray(j, p, "Text"); err != nil {
		return openai.ChatCompletionContentPartTextParam{}, err
	}
	return openai.ChatCompletionContentPartTextParam{Text: p.Text}, nil
}

// userPart converts a part of a user message.
func userPart(j int, p memory.Part) (openai.ChatCompletionContentPartUnionParam, error) {
	var none openai.ChatCompletionContentPartUnionParam
	switch p.Type {
	case partText:
		t, err := textPart(j, p)
		return openai.ChatCompletionContentPartUnionParam{OfText: &t}, err
	case partImage:
		if err := stray(j, p, "Text", "URL", "MIMEType", "Data"); err != nil {
			return none, err
		}
		url := p.URL
		switch {
		case url != "" && len(p.Data) > 0:
			return none, fmt.Errorf("%w: part %d (image) has both URL and Data", ErrInvalid, j)
		case len(p.Data) > 0:
			if p.MIMEType == "" {
				return none, fmt.Errorf("%w: part %d (image) has Data but no MIMEType", ErrInvalid, j)
			}
			url = dataURL(p.MIMEType, p.Data)
		case url == "":
			return none, fmt.Errorf("%w: part %d (image) has neither URL nor Data", ErrInvalid, j)
		case p.MIMEType != "":
			return none, fmt.Errorf("%w: part %d (image) sets MIMEType for a URL, which chat completions have no place for", ErrUnsupported, j)
		}
		return openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: url, Detail: p.Text}), nil
	case partAudio:
		if err := stray(j, p, "URL", "MIMEType", "Data"); err != nil {
			return none, err
		}
		mime, data, err := inline(j, p)
		if err != nil {
			return none, err
		}
		if data == nil {
			return none, fmt.Errorf("%w: part %d (audio) has no Data; chat completions take audio inline only", ErrInvalid, j)
		}
		format, ok := audioFormat(mime)
		if !ok {
			return none, fmt.Errorf("%w: part %d (audio) has MIME type %q; chat completions take audio/wav or audio/mpeg", ErrUnsupported, j, mime)
		}
		return openai.InputAudioContentPart(openai.ChatCompletionContentPartInputAudioInputAudioParam{
			Data: base64.StdEncoding.EncodeToString(data), Format: format,
		}), nil
	case partFile:
		var f openai.ChatCompletionContentPartFileFileParam
		if p.Text != "" {
			f.Filename = openai.String(p.Text)
		}
		switch {
		case strings.HasPrefix(p.URL, "data:"):
			if len(p.Data) > 0 {
				return none, fmt.Errorf("%w: part %d (file) has both a data URL and Data", ErrInvalid, j)
			}
			f.FileData = openai.String(p.URL)
		case strings.Contains(p.URL, ":"):
			return none, fmt.Errorf("%w: part %d (file) has URL %.40q; chat completions take a file by ID or inline", ErrUnsupported, j, p.URL)
		case p.URL != "":
			f.FileID = openai.String(p.URL)
		}
		if len(p.Data) > 0 {
			if p.MIMEType == "" {
				f.FileData = openai.String(base64.StdEncoding.EncodeToString(p.Data))
			} else {
				f.FileData = openai.String(dataURL(p.MIMEType, p.Data))
			}
		} else if p.MIMEType != "" {
			return none, fmt.Errorf("%w: part %d (file) sets MIMEType without Data, which chat completions have no place for", ErrUnsupported, j)
		}
		if f.FileID.Value == "" && f.FileData.Value == "" {
			return none, fmt.Errorf("%w: part %d (file) has neither URL (a file ID) nor Data", ErrInvalid, j)
		}
		return openai.FileContentPart(f), nil
	}
	return none, fmt.Errorf("%w: part %d has type %q", ErrUnsupported, j, p.Type)
}

// assistantPart converts a part of an assistant message.
func assistantPart(j int, p memory.Part) (openai.ChatCompletionAssistantMessageParamContentArrayOfContentPartUnion, error) {
	var out openai.ChatCompletionAssistantMessageParamContentArrayOfContentPartUnion
	switch p.Type {
	case partText:
		t, err := textPart(j, p)
		out.OfText = &t
		return out, err
	case PartRefusal:
		out.OfRefusal = &openai.ChatCompletionContentPartRefusalParam{Refusal: p.Text}
		return out, stray(j, p, "Text")
	}
	return out, fmt.Errorf("%w: part %d has type %q; an assistant message takes text and refusal parts only", ErrUnsupported, j, p.Type)
}

// inline returns the MIME type and bytes of a part given inline, by Data
// or a base64 data URL; data is nil when the part has neither.
func inline(j int, p memory.Part) (mime string, data []byte, err error) {
	switch {
	case p.URL != "" && len(p.Data) > 0:
		return "", nil, fmt.Errorf("%w: part %d (%s) has both URL and Data", ErrInvalid, j, p.Type)
	case len(p.Data) > 0:
		return p.MIMEType, p.Data, nil
	case p.URL == "":
		return p.MIMEType, nil, nil
	}
	mime, data, ok := parseDataURL(p.URL)
	if !ok {
		return "", nil, fmt.Errorf("%w: part %d (%s) has URL %.40q; chat completions take it inline only", ErrUnsupported, j, p.Type, p.URL)
	}
	if p.MIMEType != "" && p.MIMEType != mime {
		return "", nil, fmt.Errorf("%w: part %d (%s) has MIMEType %q and a data URL of %q", ErrInvalid, j, p.Type, p.MIMEType, mime)
	}
	return mime, data, nil
}

// dataURL returns data as a base64 data URL.
func dataURL(mime string, data []byte) string {
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(data)
}

// parseDataURL returns the MIME type and bytes of a base64 data URL, if s
// is one that dataURL gives back byte for byte.
func parseDataURL(s string) (mime string, data []byte, ok bool) {
	rest, found := strings.CutPrefix(s, "data:")
	if !found {
		return "", nil, false
	}
	header, payload, found := strings.Cut(rest, ",")
	if !found {
		return "", nil, false
	}
	mime, found = strings.CutSuffix(header, ";base64")
	if !found {
		return "", nil, false
	}
	data, ok = decodeExact(payload)
	return mime, data, ok
}

// decodeExact decodes standard base64 that encodes back to the same text,
// so that nothing converted back differs from what was given.
func decodeExact(s string) ([]byte, bool) {
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(data) != s {
		return nil, false
	}
	return data, true
}

// audioFormat returns the input_audio format of a MIME type.
func audioFormat(mime string) (string, bool) {
	switch mime {
	case "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave":
		return "wav", true
	case "audio/mpeg", "audio/mp3":
		return "mp3", true
	}
	return "", false
}

// audioMIME returns the MIME type of an input_audio format.
func audioMIME(format string) (string, bool) {
	switch format {
	case "wav":
		return "audio/wav", true
	case "mp3":
		return "audio/mpeg", true
	}
	return "", false
}

// fromUserPart converts a content part of a user message.
func fromUserPart(j int, u openai.ChatCompletionContentPartUnionParam) (memory.Part, error) {
	switch {
	case u.OfText != nil:
		return memory.Part{Type: partText, Text: u.OfText.Text}, nil
	case u.OfImageURL != nil:
		img := u.OfImageURL.ImageURL
		p := memory.Part{Type: partImage, Text: img.Detail, URL: img.URL}
		if mime, data, ok := parseDataURL(img.URL); ok && mime != "" {
			p.URL, p.MIMEType, p.Data = "", mime, data
		}
		return p, nil
	case u.OfInputAudio != nil:
		a := u.OfInputAudio.InputAudio
		mime, ok := audioMIME(a.Format)
		if !ok {
			return memory.Part{}, fmt.Errorf("%w: part %d (input_audio) has format %q", ErrUnsupported, j, a.Format)
		}
		data, ok := decodeExact(a.Data)
		if !ok || len(data) == 0 {
			return memory.Part{}, fmt.Errorf("%w: part %d (input_audio) data is not standard base64", ErrInvalid, j)
		}
		return memory.Part{Type: partAudio, MIMEType: mime, Data: data}, nil
	case u.OfFile != nil:
		f := u.OfFile.File
		p := memory.Part{Type: partFile, Text: f.Filename.Or(""), URL: f.FileID.Or("")}
		if s := f.FileData.Or(""); s != "" {
			if mime, data, ok := parseDataURL(s); ok && mime != "" {
				p.MIMEType, p.Data = mime, data
			} else if data, ok := decodeExact(s); ok {
				p.Data = data
			} else {
				return memory.Part{}, fmt.Errorf("%w: part %d (file) file_data is neither a base64 data URL nor standard base64", ErrInvalid, j)
			}
		}
		if strings.Contains(p.URL, ":") {
			return memory.Part{}, fmt.Errorf("%w: part %d (file) file_id %.40q holds a colon, which would read back as a URL", ErrUnsupported, j, p.URL)
		}
		return p, nil
	}
	return memory.Part{}, fmt.Errorf("%w: part %d has no variant set", ErrInvalid, j)
}
