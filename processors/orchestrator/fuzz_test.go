package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// FuzzState feeds arbitrary stored state (as a corrupted changelog could
// hold) to every entry point: none may panic, and a state that does not
// decode is a bad_state rejection, never a silent new run.
func FuzzState(f *testing.F) {
	h := newHarness(f)
	d := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
	f.Add(h.states["tr"])
	f.Add([]byte(`{"L":true,"run":["x"],"q":[{"t":"y","n":1}]}`))
	f.Add([]byte(`{"t":"tr","s":"gating","dv":"zz"}`))
	f.Add([]byte(`{`))
	f.Add([]byte{})
	o, err := orchestrator.New(h.layout, orchestrator.WithMaxPerActor(1))
	if err != nil {
		f.Fatal(err)
	}
	inputs := []pipeline.Input{
		{Topic: h.layout.Dataplane(), Key: []byte("tr"), Value: reply(d, thread.DataplaneStarted, 0)},
		{Topic: h.layout.Dataplane(), Key: []byte("tr"), Value: reply(d, thread.DataplaneFailed, 0)},
		{Topic: h.layout.Gate("verdict"), Key: []byte("tr"), Value: verdict(reply(d, thread.ArtifactDelivered, 0), true)},
		{Topic: h.layout.Intents(), Key: []byte("tr"), Value: newIntent("tr", "a", "answer")},
		{Topic: h.layout.Control(), Key: thread.ActorKey("a"), Value: &schemas.RuntimeEvent{TraceID: "z", EventType: thread.ArbitrationRelease}},
		{Topic: h.layout.Control(), Key: []byte("tr"), Value: &schemas.RuntimeEvent{TraceID: "tr", EventType: thread.ArbitrationGrant}},
	}
	f.Fuzz(func(t *testing.T, state []byte) {
		ctx := context.Background()
		for _, in := range inputs {
			_, err := o.Handle(ctx, state, in)
			if code := pipeline.CodeOf(err); err != nil && code == "" {
				t.Fatalf("transient error on bad state: %v", err)
			}
		}
		if dl, ok := o.Deadline(state); ok {
			if _, err := o.Fire(ctx, []byte("tr"), state, dl.Add(time.Hour)); err != nil && pipeline.CodeOf(err) != orchestrator.CodeBadState {
				t.Fatalf("fire: %v", err)
			}
		}
	})
}
