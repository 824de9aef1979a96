package thread

import "testing"

func TestAppendTraceparent(t *testing.T) {
	t.Parallel()
	const trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		name, trace, span, want string
	}{
		{"w3c ids", trace, span, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"a trace id that is no hex", "gp-000001", span, ""},
		{"uppercase hex", "4BF92F3577B34DA6A3CE929D0E0E4736", span, ""},
		{"short span", trace, "00f067aa0ba902", ""},
		{"all-zero trace id", "00000000000000000000000000000000", span, ""},
		{"all-zero span id", trace, "0000000000000000", ""},
		{"empty", "", "", ""},
	} {
		got, ok := AppendTraceparent([]byte("x"), tc.trace, tc.span)
		if ok != (tc.want != "") || string(got) != "x"+tc.want {
			t.Errorf("%s: %q %v, want %q", tc.name, got, ok, "x"+tc.want)
		}
	}
	if n := len(RunSpanID(trace)); n != 16 {
		t.Errorf("RunSpanID has %d digits", n)
	}
}
