package deploy_test

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// This file is a small PromQL checker for the rules and dashboards. It is
// not Prometheus' parser (github.com/prometheus/prometheus is a heavy module
// whose requirements would upgrade this module's dependencies and Go
// directive); it lexes an expression and checks what breaks rules and panels
// in practice: balanced brackets, label matchers (operator, quoted value,
// regexes that compile), known functions and aggregations, range selectors
// with valid durations where range functions need them, rate() only over
// counters, histogram_quantile() over buckets, no two operands or two binary
// operators in a row. It returns the metric names the expression reads.

type tokKind int

const (
	tIdent tokKind = iota
	tNumber
	tString
	tDuration
	tOp
	tOpen
	tClose
	tComma
	tColon
)

type token struct {
	kind tokKind
	text string
	pos  int
}

var durationRe = regexp.MustCompile(`^(\d+(ms|s|m|h|d|w|y))+$`)

func lex(expr string) ([]token, error) {
	var toks []token
	i := 0
	inRange := false // inside [...]: numbers with units are durations
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("at %d: unterminated string", i)
			}
			toks = append(toks, token{tString, expr[i+1 : j], i})
			i = j + 1
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			j := i
			for j < len(expr) && (isIdentChar(expr[j]) && expr[j] != ':' || expr[j] == '.' ||
				(expr[j] == '+' || expr[j] == '-') && (expr[j-1] == 'e' || expr[j-1] == 'E')) {
				j++
			}
			text := expr[i:j]
			kind := tNumber
			if durationRe.MatchString(text) && strings.IndexFunc(text, unicode.IsLetter) >= 0 {
				kind = tDuration
			} else if !regexp.MustCompile(`^(0x[0-9a-fA-F]+|\d*\.?\d+([eE][+-]?\d+)?)$`).MatchString(text) {
				return nil, fmt.Errorf("at %d: bad number or duration %q", i, text)
			}
			if inRange && kind == tNumber {
				return nil, fmt.Errorf("at %d: range %q needs a unit (5m, 1h)", i, text)
			}
			toks = append(toks, token{kind, text, i})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdentChar(expr[j]) {
				j++
			}
			toks = append(toks, token{tIdent, expr[i:j], i})
			i = j
		case strings.ContainsRune("({[", rune(c)):
			if c == '[' {
				inRange = true
			}
			toks = append(toks, token{tOpen, string(c), i})
			i++
		case strings.ContainsRune(")}]", rune(c)):
			if c == ']' {
				inRange = false
			}
			toks = append(toks, token{tClose, string(c), i})
			i++
		case c == ',':
			toks = append(toks, token{tComma, ",", i})
			i++
		case c == ':':
			toks = append(toks, token{tColon, ":", i})
			i++
		default:
			two := ""
			if i+1 < len(expr) {
				two = expr[i : i+2]
			}
			switch two {
			case "==", "!=", ">=", "<=", "=~", "!~":
				toks = append(toks, token{tOp, two, i})
				i += 2
				continue
			}
			if strings.ContainsRune("+-*/%^<>=", rune(c)) {
				toks = append(toks, token{tOp, string(c), i})
				i++
				continue
			}
			return nil, fmt.Errorf("at %d: unexpected %q", i, c)
		}
	}
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == ':' }

var promFuncs = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`abs absent absent_over_time ceil changes clamp clamp_max clamp_min
		day_of_month day_of_week day_of_year days_in_month delta deriv exp floor histogram_avg
		histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
		histogram_sum holt_winters hour idelta increase irate label_join label_replace ln log2
		log10 minute month predict_linear rate resets round scalar sgn sort sort_desc sqrt time
		timestamp vector year avg_over_time min_over_time max_over_time sum_over_time
		count_over_time quantile_over_time stddev_over_time stdvar_over_time last_over_time
		present_over_time`) {
		promFuncs[f] = true
	}
}

var promAggs = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
	"quantile": true, "limitk": true, "limit_ratio": true,
}

// rangeFuncs need a range vector argument.
var rangeFuncs = map[string]bool{
	"rate": true, "irate": true, "increase": true, "delta": true, "idelta": true, "deriv": true,
	"changes": true, "resets": true, "predict_linear": true, "holt_winters": true,
	"absent_over_time": true, "present_over_time": true,
}

var binOps = map[string]bool{"and": true, "or": true, "unless": true}

// labelListKeywords are followed by a parenthesised list of label names.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// checkPromQL checks expr and returns the metric names it selects.
func checkPromQL(expr string) ([]string, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("empty expression")
	}
	var metrics []string
	type frame struct {
		open string
		fn   string // function whose call this paren opened
		at   int    // token index of the open bracket
	}
	var stack []frame
	// operandEnd: the previous token ended an operand, so an operator (or a
	// modifier keyword) must come next.
	operandEnd := false
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := func() *token {
			if i+1 < len(toks) {
				return &toks[i+1]
			}
			return nil
		}
		inBraces := len(stack) > 0 && stack[len(stack)-1].open == "{"
		if inBraces {
			// label matchers: name op "value" [, ...]
			if tk.kind == tClose {
				if tk.text != "}" {
					return nil, fmt.Errorf("at %d: %q closes {", tk.pos, tk.text)
				}
				stack = stack[:len(stack)-1]
				operandEnd = true
				continue
			}
			if tk.kind == tComma {
				continue
			}
			if tk.kind != tIdent && tk.kind != tString {
				return nil, fmt.Errorf("at %d: want a label name in {...}, got %q", tk.pos, tk.text)
			}
			if i+2 >= len(toks) {
				return nil, fmt.Errorf("at %d: unfinished label matcher", tk.pos)
			}
			op, val := toks[i+1], toks[i+2]
			switch op.text {
			case "=", "!=", "=~", "!~":
			default:
				return nil, fmt.Errorf("at %d: label matcher operator %q is not =, !=, =~ or !~", op.pos, op.text)
			}
			if val.kind != tString {
				return nil, fmt.Errorf("at %d: label %s: value must be quoted", val.pos, tk.text)
			}
			if op.text == "=~" || op.text == "!~" {
				if _, err := regexp.Compile("^(?:" + val.text + ")$"); err != nil {
					return nil, fmt.Errorf("label %s: regex %q: %v", tk.text, val.text, err)
				}
			}
			i += 2
			continue
		}
		switch tk.kind {
		case tIdent:
			n := next()
			switch {
			case labelListKeywords[tk.text]:
				if n == nil || n.text != "(" {
					return nil, fmt.Errorf("at %d: %s needs a (label, ...) list", tk.pos, tk.text)
				}
				j := i + 2
				for ; j < len(toks) && toks[j].text != ")"; j++ {
					if toks[j].kind != tIdent && toks[j].kind != tComma {
						return nil, fmt.Errorf("at %d: %s (...) holds label names, got %q", toks[j].pos, tk.text, toks[j].text)
					}
				}
				if j == len(toks) {
					return nil, fmt.Errorf("at %d: unclosed %s (...)", tk.pos, tk.text)
				}
				i = j
				// by/without between an aggregation and its argument keep
				// the aggregation expecting "(".
				continue
			case binOps[tk.text] || tk.text == "bool":
				if !operandEnd && tk.text != "bool" {
					return nil, fmt.Errorf("at %d: %s without a left operand", tk.pos, tk.text)
				}
				operandEnd = false
				continue
			case tk.text == "offset":
				if n == nil || n.kind != tDuration {
					return nil, fmt.Errorf("at %d: offset needs a duration", tk.pos)
				}
				i++
				operandEnd = true
				continue
			case n != nil && n.text == "(" || promAggs[tk.text] && n != nil && labelListKeywords[n.text]:
				if !promFuncs[tk.text] && !promAggs[tk.text] {
					return nil, fmt.Errorf("at %d: unknown function %q", tk.pos, tk.text)
				}
				if operandEnd {
					return nil, fmt.Errorf("at %d: %s( follows an operand without an operator", tk.pos, tk.text)
				}
				j := i + 1
				if labelListKeywords[toks[j].text] { // sum by (x) (...)
					for j < len(toks) && toks[j].text != ")" {
						j++
					}
					j++
				}
				if j >= len(toks) || toks[j].text != "(" {
					return nil, fmt.Errorf("at %d: %s needs (...)", tk.pos, tk.text)
				}
				for k := i + 1; k < j; k++ {
					if toks[k].kind != tIdent && toks[k].kind != tComma && toks[k].kind != tOpen && toks[k].kind != tClose {
						return nil, fmt.Errorf("at %d: unexpected %q", toks[k].pos, toks[k].text)
					}
				}
				stack = append(stack, frame{open: "(", fn: tk.text, at: j})
				i = j
				operandEnd = false
				continue
			case strings.EqualFold(tk.text, "inf") || strings.EqualFold(tk.text, "nan"):
			default:
				metrics = append(metrics, tk.text)
			}
			if operandEnd {
				return nil, fmt.Errorf("at %d: %q follows an operand without an operator", tk.pos, tk.text)
			}
			operandEnd = true
		case tNumber, tString:
			if operandEnd {
				return nil, fmt.Errorf("at %d: %q follows an operand without an operator", tk.pos, tk.text)
			}
			operandEnd = true
		case tDuration:
			if len(stack) == 0 || stack[len(stack)-1].open != "[" {
				return nil, fmt.Errorf("at %d: duration %s outside [...]", tk.pos, tk.text)
			}
		case tColon:
			if len(stack) == 0 || stack[len(stack)-1].open != "[" {
				return nil, fmt.Errorf("at %d: ':' outside a subquery range", tk.pos)
			}
		case tOp:
			if !operandEnd && tk.text != "-" && tk.text != "+" {
				return nil, fmt.Errorf("at %d: operator %q without a left operand", tk.pos, tk.text)
			}
			if tk.text == "=" {
				return nil, fmt.Errorf("at %d: '=' outside a label matcher (did you mean ==?)", tk.pos)
			}
			operandEnd = false
		case tComma:
			if len(stack) == 0 || stack[len(stack)-1].fn == "" || !operandEnd {
				return nil, fmt.Errorf("at %d: stray ','", tk.pos)
			}
			operandEnd = false
		case tOpen:
			switch tk.text {
			case "{":
				// selector braces follow a metric name or stand alone
			case "[":
				if !operandEnd {
					return nil, fmt.Errorf("at %d: range [...] without a vector before it", tk.pos)
				}
				if n := next(); n == nil || n.kind != tDuration {
					return nil, fmt.Errorf("at %d: range needs a duration such as 5m", tk.pos)
				}
			case "(":
				if operandEnd {
					return nil, fmt.Errorf("at %d: '(' follows an operand without an operator", tk.pos)
				}
			}
			stack = append(stack, frame{open: tk.text, at: i})
			if tk.text != "[" {
				operandEnd = false
			}
		case tClose:
			if len(stack) == 0 {
				return nil, fmt.Errorf("at %d: unbalanced %q", tk.pos, tk.text)
			}
			top := stack[len(stack)-1]
			want := map[string]string{"(": ")", "[": "]", "{": "}"}[top.open]
			if tk.text != want {
				return nil, fmt.Errorf("at %d: %q closes %q", tk.pos, tk.text, top.open)
			}
			stack = stack[:len(stack)-1]
			if top.fn != "" {
				if err := checkCall(top.fn, toks[top.at+1:i]); err != nil {
					return nil, fmt.Errorf("at %d: %w", toks[top.at].pos, err)
				}
			}
			operandEnd = true
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("unclosed %q", stack[len(stack)-1].open)
	}
	if !operandEnd {
		return nil, fmt.Errorf("expression ends with an operator")
	}
	return metrics, nil
}

// checkCall checks the arguments of a function that needs a range vector or
// a counter or histogram buckets.
func checkCall(fn string, args []token) error {
	hasRange := false
	var names []string
	depth, braces := 0, 0
	for i := 0; i < len(args); i++ {
		t := args[i]
		switch {
		case t.text == "{":
			braces++
		case t.text == "}":
			braces--
		case braces > 0:
		case t.kind == tOpen:
			if t.text == "[" && depth == 0 {
				hasRange = true
			}
			depth++
		case t.kind == tClose:
			depth--
		case t.kind == tIdent && labelListKeywords[t.text]:
			for i < len(args) && args[i].text != ")" {
				i++
			}
		case t.kind == tIdent && (promFuncs[t.text] || promAggs[t.text] || binOps[t.text] ||
			t.text == "bool" || t.text == "offset"):
		case t.kind == tIdent:
			names = append(names, t.text)
		}
	}
	if (rangeFuncs[fn] || strings.HasSuffix(fn, "_over_time")) && !hasRange {
		return fmt.Errorf("%s() needs a range vector such as x[5m]", fn)
	}
	if fn == "rate" || fn == "irate" || fn == "increase" {
		for _, n := range names {
			if !isCounterName(n) {
				return fmt.Errorf("%s(%s): not a counter (_total, _count, _sum or _bucket)", fn, n)
			}
		}
	}
	if fn == "histogram_quantile" {
		ok := false
		for _, n := range names {
			if strings.HasSuffix(n, "_bucket") {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("histogram_quantile() reads no _bucket series")
		}
	}
	return nil
}

func isCounterName(n string) bool {
	for _, s := range []string{"_total", "_count", "_sum", "_bucket"} {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return false
}
