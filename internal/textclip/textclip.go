// Package textclip cuts untrusted text to a byte budget for headers, labels
// and stored fields, keeping it valid UTF-8.
package textclip

import (
	"strings"
	"unicode/utf8"
)

// Clip returns s with invalid UTF-8 replaced by U+FFFD, cut to at most n
// bytes without splitting a rune.
func Clip(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
