package textclip

import (
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 4, ""},
		{"abc", 4, "abc"},
		{"abcdef", 4, "abcd"},
		{"héllo", 2, "h"},          // é is 2 bytes: not split
		{"héllo", 3, "hé"},         // fits exactly
		{"日本語", 4, "日"},            // 3-byte runes
		{"a\xffb", 10, "a\uFFFDb"}, // invalid byte replaced
		{"\xff\xff", 3, "\uFFFD"},  // the replacement counts in bytes
		{"abc", 0, ""},
	}
	for _, tc := range tests {
		got := Clip(tc.in, tc.n)
		if got != tc.want || len(got) > tc.n || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
