package openai

import "errors"

var (
	// ErrUnsupported is returned by Messages and Param for a message that
	// chat completions cannot carry as it is (a part type with no
	// equivalent for the message's role, a part field that would be
	// dropped, audio or a file given by URL), and by FromParam and
	// FromResponse for what a memory.Message cannot hold (a function-role
	// message, a custom tool call, assistant audio, a deprecated
	// function_call).
	ErrUnsupported = errors.New("openai: unsupported")

	// ErrInvalid is returned by every function of the package for a
	// message that is incomplete or malformed on either side: a param
	// union with no variant set, a tool message without the tool call ID
	// it answers, an inline image without a MIME type, inline data that
	// is not base64.
	ErrInvalid = errors.New("openai: invalid message")
)
