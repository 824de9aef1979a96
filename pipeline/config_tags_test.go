package pipeline

import (
	"reflect"
	"strings"
)

func configEnvTags() []string {
	var out []string
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		tag := typ.Field(i).Tag.Get("env")
		if tag == "" {
			continue
		}
		out = append(out, strings.TrimSpace(strings.Split(tag, ",")[0]))
	}
	return out
}
