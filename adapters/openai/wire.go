package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spinerun/spine/internal/textclip"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/schemas"
)

// The Chat Completions wire format, as much of it as the executor sends
// and reads. https://platform.openai.com/docs/api-reference/chat

type chatRequest struct {
	Model          string          `json:"model"`
	Messages       []chatMessage   `json:"messages"`
	Temperature    *float64        `json:"temperature,omitempty"`
	MaxTokens      int             `json:"max_tokens,omitempty"`
	ResponseFormat *responseFormat `json:"response_format,omitempty"`
	Stream         bool            `json:"stream"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type responseFormat struct {
	Type string `json:"type"`
}

type chatCompletion struct {
	// Choices is a pointer so that a body without it (not a chat
	// completion) differs from an empty list (a completion without
	// choices).
	Choices *[]chatChoice `json:"choices"`
	Usage   *chatUsage    `json:"usage"`
}

type chatChoice struct {
	Message      *choiceMessage `json:"message"`
	FinishReason string         `json:"finish_reason"`
}

type choiceMessage struct {
	Content *string `json:"content"`
	Refusal *string `json:"refusal"`
}

type chatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// Artifact content types.
const (
	ContentTypeText = "text/plain; charset=utf-8"
	ContentTypeJSON = "application/json"
)

// maxMessageBytes bounds any text of the server's kept in an error.
const maxMessageBytes = 512

// decodeCompletion turns a 2xx body into a result: choices[0]'s content,
// finish reason and the usage. A body that is not a chat completion is
// malformed_response; one without a choice or content is empty_response;
// in JSON mode, content that is not valid JSON is malformed_response.
// Neither is retryable. Errors carry no content beyond a bounded refusal.
func decodeCompletion(body []byte, jsonMode bool) (dataplane.Result, error) {
	var c chatCompletion
	if err := json.Unmarshal(body, &c); err != nil {
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindMalformed,
			fmt.Errorf("the body is not a chat completion: %v", describeJSONError(err)))
	}
	if c.Choices == nil {
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindMalformed,
			errors.New("the body is not a chat completion: no choices field"))
	}
	if len(*c.Choices) == 0 {
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindEmptyResponse, errors.New("the completion has no choices"))
	}
	ch := (*c.Choices)[0]
	finish := textclip.Clip(ch.FinishReason, 64)
	switch {
	case ch.Message == nil:
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindEmptyResponse,
			fmt.Errorf("the completion's first choice has no message (finish_reason %q)", finish))
	case ch.Message.Content == nil || *ch.Message.Content == "":
		if r := ch.Message.Refusal; r != nil && *r != "" {
			return dataplane.Result{}, dataplane.Permanent(dataplane.KindEmptyResponse,
				fmt.Errorf("the model refused: %s", textclip.Clip(*r, maxMessageBytes)))
		}
		return dataplane.Result{}, dataplane.Permanent(dataplane.KindEmptyResponse,
			fmt.Errorf("the completion's first choice has no content (finish_reason %q)", finish))
	}
	content := []byte(*ch.Message.Content)
	ct := ContentTypeText
	if jsonMode {
		if !json.Valid(content) {
			return dataplane.Result{}, dataplane.Permanent(dataplane.KindMalformed,
				fmt.Errorf("JSON was asked but the content (%d bytes, finish_reason %q) is not valid JSON", len(content), finish))
		}
		ct = ContentTypeJSON
	}
	res := dataplane.Result{ContentType: ct, Content: content, FinishReason: finish}
	if c.Usage != nil {
		res.Usage = &schemas.Usage{InputTokens: c.Usage.PromptTokens, OutputTokens: c.Usage.CompletionTokens}
	}
	return res, nil
}

// describeJSONError says what is wrong with a body without quoting it.
func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("JSON %s where %s was expected at %q", te.Value, te.Type, textclip.Clip(te.Field, 64))
	}
	return textclip.Clip(err.Error(), maxMessageBytes)
}

// apiError reads a non-2xx body: the OpenAI error shape
// {"error":{"message","type","code"}}, vLLM's older top-level
// {"object":"error","message","type","code"}, {"error":"text"}, or else
// the start of the body as text. Every field is bounded and scrubbed of
// key.
func apiError(status int, body []byte, key Secret) *APIError {
	e := &APIError{StatusCode: status}
	type fields struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	}
	var wire struct {
		Error json.RawMessage `json:"error"`
		fields
	}
	if json.Unmarshal(body, &wire) == nil {
		var nested fields
		var text string
		switch {
		case len(wire.Error) > 0 && json.Unmarshal(wire.Error, &nested) == nil:
			e.Message, e.Type, e.Code = nested.Message, nested.Type, codeText(nested.Code)
		case len(wire.Error) > 0 && json.Unmarshal(wire.Error, &text) == nil:
			e.Message = text
		default:
			e.Message, e.Type, e.Code = wire.Message, wire.Type, codeText(wire.Code)
		}
		if e.Message == "" && e.Type == "" && e.Code == "" {
			e.Message = wire.Message
		}
	}
	if e.Message == "" && e.Type == "" && e.Code == "" {
		e.Message = string(body) // not an error shape we know: its start
	}
	e.Message = scrub(e.Message, key, maxMessageBytes)
	e.Type = scrub(e.Type, key, 64)
	e.Code = scrub(e.Code, key, 64)
	return e
}

// codeText renders an error code, a string or a number in the wild.
func codeText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&n) == nil {
		if _, err := strconv.ParseFloat(n.String(), 64); err == nil {
			return n.String()
		}
	}
	return ""
}

// scrub removes the key from the server's text, should it echo it, and
// bounds the text to n bytes of valid UTF-8 on one line.
func scrub(s string, key Secret, n int) string {
	if k := key.Reveal(); k != "" {
		s = strings.ReplaceAll(s, k, redacted)
	}
	s = strings.Join(strings.Fields(s), " ")
	return textclip.Clip(s, n)
}
