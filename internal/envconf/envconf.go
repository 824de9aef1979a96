// Package envconf reads a configuration struct from the environment with
// go-envconfig, nested component structs included, and reports every
// missing or invalid variable at once instead of stopping at the first.
package envconf

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// maxBad bounds how many bad variables one Load reports.
const maxBad = 64

// Load fills target (a pointer to a struct) from l, defaults applied.
// aliases maps a variable to another one read when it is unset or empty
// (KAFKA_BROKERS to KAFKA_BOOTSTRAP_SERVERS). Every variable that does not
// parse is reported as "VAR: "value" is invalid: why", and its default
// applies, so the other fields are still read.
func Load(ctx context.Context, l envconfig.Lookuper, target any, aliases map[string]string) []error {
	hidden := map[string]bool{}
	var errs []error
	zero := reflect.ValueOf(target).Elem()
	typ := zero.Type()
	for range maxBad {
		zero.Set(reflect.Zero(typ))
		lk := envconfig.LookuperFunc(func(key string) (string, bool) {
			if hidden[key] {
				return "", false
			}
			if alias, ok := aliases[key]; ok {
				if v, ok := l.Lookup(key); ok && v != "" {
					return v, true
				}
				return l.Lookup(alias)
			}
			return l.Lookup(key)
		})
		err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: lk})
		if err == nil {
			return errs
		}
		key, why, ok := varOf(typ, err.Error())
		if !ok || hidden[key] {
			return append(errs, err)
		}
		v, _ := lk.Lookup(key)
		hidden[key] = true
		errs = append(errs, fmt.Errorf("%s: %q is invalid: %s", key, v, why))
	}
	return append(errs, errors.New("too many invalid variables"))
}

// varOf maps go-envconfig's error text ("Orchestrator: ExecTimeout: why")
// to the field's variable and the why.
func varOf(t reflect.Type, msg string) (key, why string, ok bool) {
	for {
		name, rest, found := strings.Cut(msg, ": ")
		if !found {
			return "", "", false
		}
		f, exists := t.FieldByName(name)
		if !exists {
			return "", "", false
		}
		if tag := f.Tag.Get("env"); tag != "" && !strings.HasPrefix(tag, ",") {
			return strings.TrimSpace(strings.Split(tag, ",")[0]), rest, true
		}
		if f.Type.Kind() != reflect.Struct {
			return "", "", false
		}
		t, msg = f.Type, rest
	}
}

// Vars lists every variable the struct type of target reads, nested
// structs included, in field order.
func Vars(target any) []string {
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for f := range t.Fields() {
			if tag := f.Tag.Get("env"); tag != "" && !strings.HasPrefix(tag, ",") {
				out = append(out, strings.TrimSpace(strings.Split(tag, ",")[0]))
			} else if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeOf(target).Elem())
	return out
}

// Error lists every problem found in the environment.
type Error struct{ Errs []error }

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem", len(e.Errs))
	if len(e.Errs) > 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, err := range e.Errs {
		b.WriteString("\n  - ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the individual problems.
func (e *Error) Unwrap() []error { return e.Errs }
