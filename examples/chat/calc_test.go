package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/memory"
)

func TestEvaluate(t *testing.T) {
	tests := []struct {
		expr    string
		want    float64
		wantErr string // "" for none
	}{
		{"6*7", 42, ""},
		{" 1 + 2 * 3 ", 7, ""},
		{"(1 + 2) * 3", 9, ""},
		{"10 - 4 - 3", 3, ""}, // left to right
		{"2 / 4 / 2", 0.25, ""},
		{"-3 * -(2 + 1)", 9, ""},
		{"+5", 5, ""},
		{"--5", 5, ""},
		{"1.5 * .5", 0.75, ""},
		{"7.", 7, ""},
		{"((((1))))", 1, ""},
		{"0 / 5", 0, ""},
		{"1 / 0", 0, "division by zero"},
		{"1 / (2 - 2)", 0, "division by zero"},
		{"", 0, "unexpected end of expression"},
		{"   ", 0, "unexpected end of expression"},
		{"1 +", 0, "unexpected end of expression"},
		{"(1 + 2", 0, "missing ) for the ( at 1"},
		{"1 + 2)", 0, `unexpected ')' at 6`},
		{"6 7", 0, `unexpected '7' at 3`},
		{"2 ** 3", 0, `unexpected '*' at 4`},
		{"1.2.3", 0, `unexpected '.' at 4`},
		{".", 0, `"." at 1 is not a number`},
		{"2 ^ 3", 0, `unexpected '^' at 3`},
		{"x + 1", 0, `unexpected 'x' at 1`},
		{"1 + é", 0, `unexpected 'é' at 5`},
		{"()", 0, `unexpected ')' at 2`},
		{"1e5", 0, `unexpected 'e' at 2`},
		{"1" + strings.Repeat("0", 400), 0, "number 1" + strings.Repeat("0", 400) + ": result out of range"},
		{strings.Repeat("9", 300) + "*" + strings.Repeat("9", 300), 0, "result out of range"},
		{strings.Repeat("(", 1000) + "1" + strings.Repeat(")", 1000), 0, "nested more than 100 levels deep"},
		{strings.Repeat("-", 1_000_000) + "1", 0, "nested more than 100 levels deep"},
	}
	for _, tt := range tests {
		name := tt.expr
		if len(name) > 40 {
			name = name[:40] + "…"
		}
		t.Run(name, func(t *testing.T) {
			got, err := evaluate(tt.expr)
			if tt.wantErr != "" {
				require.Error(t, err, "got %v", got)
				assert.Equal(t, tt.wantErr, err.Error())
				return
			}
			require.NoError(t, err)
			assert.InDelta(t, tt.want, got, 1e-12)
		})
	}
}

func TestFormatNumber(t *testing.T) {
	tests := map[float64]string{
		42:          "42",
		0.1 + 0.2:   "0.3",
		1.0 / 3:     "0.333333333333333",
		-2.5:        "-2.5",
		1e21:        "1e+21",
		123456789e3: "123456789000",
	}
	for v, want := range tests {
		assert.Equal(t, want, formatNumber(v), "formatNumber(%v)", v)
	}
	negZero, err := evaluate("-0")
	require.NoError(t, err)
	assert.Equal(t, "0", formatNumber(negZero))
}

func TestExpressionIn(t *testing.T) {
	tests := map[string]string{
		"what is 6*7":            "6*7",
		"what is 6 * 7?":         "6 * 7",
		"compute (2+3)*4 please": "(2+3)*4",
		"(what is 2+3)":          "2+3",
		"Say 1.5/3.":             "1.5/3",
		"what is -2 - -3":        "-2 - -3",
		"is 6 the answer, or 7?": "",
		"I am 25 - honestly":     "",
		"hello":                  "",
		"my name is Ada":         "",
		"1/0":                    "1/0",
		"x 6* y":                 "",
		". 6*7":                  "6*7",
	}
	for in, want := range tests {
		assert.Equal(t, want, expressionIn(in), "expressionIn(%q)", in)
	}
}

func TestCallTool(t *testing.T) {
	tests := []struct {
		name, tool, args, content, err string
	}{
		{"ok", calculatorName, `{"expression":"6*7"}`, "42", ""},
		{"extra field", calculatorName, `{"expression":"1+1","precision":3}`, "2", ""},
		{"bad expression", calculatorName, `{"expression":"6*"}`, "error: unexpected end of expression", "unexpected end of expression"},
		{"division by zero", calculatorName, `{"expression":"6/0"}`, "error: division by zero", "division by zero"},
		{"no expression", calculatorName, `{}`, "error: unexpected end of expression", "unexpected end of expression"},
		{"not json", calculatorName, `6*7`, `error: arguments: want {"expression": "…"}: invalid character '*' after top-level value`, `arguments: want {"expression": "…"}: invalid character '*' after top-level value`},
		{"json string", calculatorName, `"6*7"`, `error: arguments: want {"expression": "…"}: json: cannot unmarshal string into Go value of type main.calculatorArgs`, `arguments: want {"expression": "…"}: json: cannot unmarshal string into Go value of type main.calculatorArgs`},
		{"no arguments", calculatorName, ``, `error: arguments: want {"expression": "…"}: unexpected end of JSON input`, `arguments: want {"expression": "…"}: unexpected end of JSON input`},
		{"unknown tool", "weather", `{}`, `error: unknown tool "weather"`, `unknown tool "weather"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := callTool(memory.ToolCall{ID: "call_1", Name: tt.tool, Arguments: tt.args})
			if tt.err == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Equal(t, tt.err, err.Error())
			}
			assert.Equal(t, memory.Message{Role: memory.RoleTool, Name: tt.tool, ToolCallID: "call_1", Content: tt.content}, m)
		})
	}
}
