package registry_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/schemas/registry"
)

// TestConcurrentWritersAgree: two instances take writes at the same time;
// every registration succeeds, no id is given to two schemas, and both
// instances end with the same view.
func TestConcurrentWritersAgree(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	// The instances share a transactional id and fence each other: a write
	// retries until it wins, which on a loaded broker can outlast the
	// default 15s write timeout and the sr client's 5s HTTP timeout.
	ins := []*instance{b.start(t, registry.WithWriteTimeout(60*time.Second)), b.start(t, registry.WithWriteTimeout(60*time.Second))}
	writers := make([]*sr.Client, len(ins))
	for i, in := range ins {
		cl, err := sr.NewClient(sr.URLs(in.url), sr.HTTPClient(&http.Client{Timeout: 90 * time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		writers[i] = cl
	}
	ctx := t.Context()
	const per = 6
	var mu sync.Mutex
	ids := map[int]string{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := writers[w%2]
			for i := range per {
				name := fmt.Sprintf("C%d_%d", w, i)
				s := strings.Replace(userV1, `"User"`, `"`+name+`"`, 1)
				id, err := cl.RegisterSchema(ctx, "conc-"+name, sr.Schema{Schema: s}, -1, -1)
				if err != nil {
					t.Errorf("register %s: %v", name, err)
					return
				}
				mu.Lock()
				if prev, dup := ids[id]; dup {
					t.Errorf("id %d given to %s and %s", id, prev, name)
				}
				ids[id] = name
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(ids) != 4*per {
		t.Fatalf("%d ids for %d schemas", len(ids), 4*per)
	}
	// Reads are served from each instance's replay of the log: they
	// converge once both have read the last write.
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, _ := ins[0].sr.Subjects(ctx)
		c, _ := ins[1].sr.Subjects(ctx)
		if len(a) == 4*per && strings.Join(a, ",") == strings.Join(c, ",") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instances disagree after 30s: %d vs %d subjects", len(a), len(c))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for id, name := range ids {
		for _, in := range ins {
			if txt, err := in.sr.SchemaTextByID(ctx, id); err != nil || !strings.Contains(txt, `"`+name+`"`) {
				t.Errorf("id %d on %s = %q, %v; want schema %s", id, in.url, txt, err, name)
			}
		}
	}
}
