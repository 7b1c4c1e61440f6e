package backend

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/searchtext"
)

// appendPGRows appends msgs as the JSON array the PostgreSQL save and
// append statements read with json_to_recordset, numbering them from
// first: one object per message with every key present (pos, id, role,
// content, name, tool_calls, tool_call_id, parts, meta, tokens, search),
// so that json_to_recordset never yields NULL for a NOT NULL column.
//
// It is written by hand, in one pass, for the save path: the message's
// tool calls, parts and metadata, which driver.Prepare encoded already,
// are embedded as JSON values, not encoded a second time as strings
// (json_to_recordset gives a TEXT column the exact text of a nested
// value, so the stored bytes are the prepared ones), and the search text
// is written by searchtext.AppendText straight into the array. A field
// that is not one JSON array or object (a PreparedMessage made by hand)
// goes as a string, as before. Strings are escaped as encoding/json
// escapes them for PostgreSQL's purposes: invalid UTF-8 becomes U+FFFD,
// control characters, quotes and backslashes are escaped.
func appendPGRows(dst []byte, msgs []driver.PreparedMessage, first int32) []byte {
	dst = append(dst, '[')
	for i := range msgs {
		m := &msgs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"pos":`...)
		dst = strconv.AppendInt(dst, int64(first)+int64(i), 10)
		dst = append(dst, `,"id":`...)
		dst = appendJSONString(dst, m.ID)
		dst = append(dst, `,"role":`...)
		dst = appendJSONString(dst, string(m.Role))
		dst = append(dst, `,"content":`...)
		dst = appendJSONString(dst, m.Content)
		dst = append(dst, `,"name":`...)
		dst = appendJSONString(dst, m.Name)
		dst = append(dst, `,"tool_calls":`...)
		dst = appendJSONValue(dst, m.ToolCallsJSON)
		dst = append(dst, `,"tool_call_id":`...)
		dst = appendJSONString(dst, m.ToolCallID)
		dst = append(dst, `,"parts":`...)
		dst = appendJSONValue(dst, m.PartsJSON)
		dst = append(dst, `,"meta":`...)
		dst = appendJSONValue(dst, m.MetadataJSON)
		dst = append(dst, `,"tokens":`...)
		dst = strconv.AppendInt(dst, int64(m.Tokens), 10)
		dst = append(dst, `,"search":"`...)
		n := len(dst)
		dst = searchtext.AppendText(dst, m.Content) // letters, digits, marks and spaces: nothing to escape
		if len(dst) == n {
			dst = append(dst[:n-1], "null"...)
		} else {
			dst = append(dst, '"')
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// appendJSONValue appends stored JSON for a TEXT column of
// json_to_recordset: null for none, the JSON itself when it is one array
// or object (whose text the column then holds exactly), else a string.
func appendJSONValue(dst []byte, data []byte) []byte {
	switch {
	case data == nil:
		return append(dst, "null"...)
	case len(data) >= 2 && (data[0] == '[' && data[len(data)-1] == ']' || data[0] == '{' && data[len(data)-1] == '}') && json.Valid(data):
		return append(dst, data...)
	}
	return appendJSONString(dst, string(data))
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 { // invalid UTF-8: U+FFFD, as encoding/json writes it
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"
