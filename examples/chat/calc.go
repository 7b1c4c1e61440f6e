package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/turnkeep/turnkeep/memory"
)

// The calculator is the one tool of the chat: both agents call it, the
// offline one when a message holds arithmetic ("what is 6*7"), the
// language model when it chooses to.
const calculatorName = "calculator"

// calculatorTool describes the calculator to a language model, in the
// chat completions "tools" form.
var calculatorTool = toolSpec{
	Type: "function",
	Function: toolFunction{
		Name:        calculatorName,
		Description: "Evaluates an arithmetic expression exactly as written: numbers with an optional decimal point, + - * / and parentheses.",
		Parameters: json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string",` +
			`"description":"the expression, such as (1.5+2)*4"}},"required":["expression"]}`),
	},
}

// calculatorArgs are the arguments of a calculator call.
type calculatorArgs struct {
	Expression string `json:"expression"`
}

// callTool runs call and returns the tool message answering it. A failure
// (an unknown tool, bad arguments, an expression that does not evaluate)
// is returned as err and also written into the message's content as
// "error: …", for a model to read; it never panics.
func callTool(call memory.ToolCall) (result memory.Message, err error) {
	result = memory.Message{Role: memory.RoleTool, Name: call.Name, ToolCallID: call.ID}
	defer func() {
		if err != nil {
			result.Content = "error: " + err.Error()
		}
	}()
	if call.Name != calculatorName {
		return result, fmt.Errorf("unknown tool %q", call.Name)
	}
	var args calculatorArgs
	if err := json.Unmarshal([]byte(call.Arguments), &args); err != nil {
		return result, fmt.Errorf(`arguments: want {"expression": "…"}: %v`, err)
	}
	v, err := evaluate(args.Expression)
	if err != nil {
		return result, err
	}
	result.Content = formatNumber(v)
	return result, nil
}

// calculatorCall returns a call of the calculator on expr, with a fresh
// call ID.
func calculatorCall(expr string) memory.ToolCall {
	args, _ := json.Marshal(calculatorArgs{Expression: expr}) // cannot fail
	return memory.ToolCall{ID: newCallID(), Name: calculatorName, Arguments: string(args)}
}

// newCallID returns a random tool call ID in OpenAI's style.
func newCallID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never returns an error
	return "call_" + hex.EncodeToString(b[:])
}

// formatNumber writes v with up to 15 significant digits, the precision a
// float64 keeps, so that 0.1+0.2 reads 0.3.
func formatNumber(v float64) string {
	if v == 0 {
		v = 0 // -0 reads 0
	}
	return strconv.FormatFloat(v, 'g', 15, 64)
}

// arithmeticRE finds a candidate expression in a message: a run of
// numbers, operators, parentheses and spaces holding an operator between
// two operands ("6*7", "(1 + 2) / 3"). "2024-01-05" counts too; the
// offline agent is a demonstration, not a parser of intent.
var (
	arithmeticRE = regexp.MustCompile(`[-+(.\d][-+*/().\d ]*`)
	binaryOpRE   = regexp.MustCompile(`[\d.)]\s*[-+*/]\s*[-+(.\d]`)
)

// expressionIn returns the first arithmetic expression in s, or "". A
// full stop or a parenthesis around it that belongs to the sentence ("(is
// it 6*7?)", "Say 6*7.") is left out, and so is a trailing decimal point.
func expressionIn(s string) string {
	for _, m := range arithmeticRE.FindAllString(s, -1) {
		for {
			n := len(m)
			m = strings.TrimSpace(m)
			if strings.HasPrefix(m, ".") && !(len(m) > 1 && isDigit(m[1])) ||
				strings.HasPrefix(m, "(") && strings.Count(m, "(") > strings.Count(m, ")") {
				m = m[1:]
			}
			if strings.HasSuffix(m, ".") || // "7." is rarely a number, often a full stop
				strings.HasSuffix(m, ")") && strings.Count(m, ")") > strings.Count(m, "(") {
				m = m[:len(m)-1]
			}
			if len(m) == n {
				break
			}
		}
		if binaryOpRE.MatchString(m) {
			return m
		}
	}
	return ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Errors of evaluate.
var (
	errDivisionByZero = errors.New("division by zero")
	errOutOfRange     = errors.New("result out of range")
)

// maxDepth bounds how deeply an expression nests (parentheses and signs),
// so that no input can exhaust the stack.
const maxDepth = 100

// evaluate returns the value of an arithmetic expression: decimal numbers,
// + - * / with the usual precedence, unary + and -, and parentheses.
func evaluate(expr string) (float64, error) {
	p := parser{s: expr}
	v, err := p.expr(0)
	if err != nil {
		return 0, err
	}
	p.skipSpace()
	if p.i < len(p.s) {
		return 0, p.unexpected()
	}
	return v, nil
}

// parser is a recursive-descent parser of one expression:
//
//	expr   = term { ("+" | "-") term }
//	term   = factor { ("*" | "/") factor }
//	factor = ("+" | "-") factor | number | "(" expr ")"
type parser struct {
	s string
	i int // the next byte to read
}

func (p *parser) expr(depth int) (float64, error) {
	v, err := p.term(depth)
	for err == nil {
		p.skipSpace()
		if p.i == len(p.s) || (p.s[p.i] != '+' && p.s[p.i] != '-') {
			break
		}
		op := p.s[p.i]
		p.i++
		var w float64
		if w, err = p.term(depth); err == nil {
			if op == '+' {
				v += w
			} else {
				v -= w
			}
			err = finite(v)
		}
	}
	return v, err
}

func (p *parser) term(depth int) (float64, error) {
	v, err := p.factor(depth)
	for err == nil {
		p.skipSpace()
		if p.i == len(p.s) || (p.s[p.i] != '*' && p.s[p.i] != '/') {
			break
		}
		op := p.s[p.i]
		p.i++
		var w float64
		if w, err = p.factor(depth); err == nil {
			switch {
			case op == '*':
				v *= w
			case w == 0:
				return 0, errDivisionByZero
			default:
				v /= w
			}
			err = finite(v)
		}
	}
	return v, err
}

func (p *parser) factor(depth int) (float64, error) {
	if depth >= maxDepth {
		return 0, fmt.Errorf("nested more than %d levels deep", maxDepth)
	}
	p.skipSpace()
	if p.i == len(p.s) {
		return 0, errors.New("unexpected end of expression")
	}
	switch c := p.s[p.i]; {
	case c == '+' || c == '-':
		p.i++
		v, err := p.factor(depth + 1)
		if c == '-' {
			v = -v
		}
		return v, err
	case c == '(':
		open := p.i
		p.i++
		v, err := p.expr(depth + 1)
		if err != nil {
			return 0, err
		}
		p.skipSpace()
		if p.i == len(p.s) || p.s[p.i] != ')' {
			return 0, fmt.Errorf("missing ) for the ( at %d", open+1)
		}
		p.i++
		return v, nil
	case c == '.' || isDigit(c):
		return p.number()
	}
	return 0, p.unexpected()
}

// number reads digits with at most one decimal point.
func (p *parser) number() (float64, error) {
	start, digits, point := p.i, 0, false
	for ; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		if c == '.' && !point {
			point = true
		} else if isDigit(c) {
			digits++
		} else {
			break
		}
	}
	text := p.s[start:p.i]
	if digits == 0 {
		return 0, fmt.Errorf("%q at %d is not a number", text, start+1)
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil { // only a number too large for a float64
		return 0, fmt.Errorf("number %s: %w", text, errOutOfRange)
	}
	return v, nil
}

func (p *parser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// unexpected reports the character at p.i, which the grammar does not
// allow there.
func (p *parser) unexpected() error {
	r := []rune(p.s[p.i:])[0]
	return fmt.Errorf("unexpected %q at %d", r, p.i+1)
}

func finite(v float64) error {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return errOutOfRange
	}
	return nil
}
