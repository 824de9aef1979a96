package mcp_test

import (
	"context"
	"fmt"

	"github.com/spinerun/spine/adapters/mcp"
	"github.com/spinerun/spine/processors/dataplane"
)

// An executor for the echo tool of a server Spine starts over stdio: the
// request's Input is the tool's arguments object. New does no I/O; Run
// starts the server and keeps the session until ctx ends.
func ExampleNew() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := mcp.New(mcp.Config{Tool: "echo", Command: []string{serverBin}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	go e.Run(ctx)
	<-e.Ready()
	req := dataplane.Request{Input: []byte(`{"text":"hi"}`)}
	if err := e.Validate(req); err != nil {
		fmt.Println(err)
		return
	}
	res, err := e.Execute(ctx, req)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.ContentType, string(res.Content))
	// Output: text/plain {"text":"hi"}
}
