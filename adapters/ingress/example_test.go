package ingress_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/spinerun/spine/adapters/ingress"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
)

// printProducer stands in for *pipeline.Producer: it acknowledges every
// record at offset 41.
type printProducer struct{}

func (printProducer) Produce(_ context.Context, outs ...pipeline.Output) ([]pipeline.Produced, error) {
	in := outs[0].Value.(*schemas.Intent)
	fmt.Printf("produced %s intent %q by %s to %s\n", in.SchemaVersion, in.Kind, in.Actor, outs[0].Topic)
	return []pipeline.Produced{{Topic: outs[0].Topic, Partition: 2, Offset: 41}}, nil
}

// The ingress on a mux; with ingress.WithVerifier(oidcVerifier) every
// request needs a bearer token.
func ExampleNew() {
	h, err := ingress.New(ingress.Config{}, printProducer{}, ingress.WithKinds("summarize"))
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, body := range []string{`{"kind":"summarize","input":"Kafka is a log.","actor":"me"}`, `{"kind":"summarize"}`} {
		resp, err := http.Post(srv.URL+ingress.Path, "application/json", strings.NewReader(body))
		if err != nil {
			fmt.Println(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			fmt.Print(resp.StatusCode, " ", string(b))
		} else {
			fmt.Println(resp.StatusCode)
		}
	}
	// Output:
	// produced V1 intent "summarize" by me to spine.intents
	// 202
	// 400 {"error":"input: is required: the run's input text","code":"missing_field","field":"input","errors":[{"error":"input: is required: the run's input text","code":"missing_field","field":"input"}]}
}
