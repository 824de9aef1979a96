package thread_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/schemas/thread"
)

func TestArtifactID(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1780000000123)
	id := thread.ArtifactID("trace-1", "span-1", at)
	if id != thread.ArtifactID("trace-1", "span-1", at) || id == thread.ArtifactID("trace-1", "span-2", at) {
		t.Fatalf("artifact ids are not deterministic per dispatch: %s", id)
	}
	got, err := thread.ParseArtifactID(id)
	if err != nil || !got.Equal(at) {
		t.Fatalf("thread.ParseArtifactID(%s) = %v, %v; want %v", id, got, err, at)
	}
	for _, bad := range []string{"", "art-", "x-18a-" + thread.ID("t"), "art-zz-" + thread.ID("t"), "art-18a-abc", "art-18a-" + strings.ToUpper(thread.ID("t")), "art--" + thread.ID("t"), "art-1234567890abc-" + thread.ID("t")} {
		if _, err := thread.ParseArtifactID(bad); !errors.Is(err, thread.ErrNotArtifactID) {
			t.Errorf("thread.ParseArtifactID(%q) = %v, want thread.ErrNotArtifactID", bad, err)
		}
	}
}

func FuzzParseArtifactID(f *testing.F) {
	f.Add(thread.ArtifactID("t", "s", time.UnixMilli(1)))
	f.Add("art-0-00")
	f.Fuzz(func(t *testing.T, id string) {
		at, err := thread.ParseArtifactID(id)
		if err != nil {
			return
		}
		_, hash, _ := strings.Cut(id[len("art-"):], "-")
		if again := "art-" + strconv.FormatInt(at.UnixMilli(), 16) + "-" + hash; again != id && !strings.HasPrefix(id[len("art-"):], "0") {
			t.Fatalf("%q parses to %v, which prints as %q", id, at, again)
		}
	})
}
