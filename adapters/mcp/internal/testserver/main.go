// Command testserver is a small MCP server built with the go-sdk for the
// adapter's tests. It serves over stdio by default, or over streamable HTTP
// with -http addr. Its tools: echo (the text of its arguments), structured
// (StructuredContent), fail (IsError "boom"), hang (blocks until the call's
// ctx ends), meta (the traceparent of the request's _meta, or nothing) and
// crash (the process exits with status 3; with
// {"survive":true} it answers "alive <pid>" instead, so a test can tell a
// restarted process from the first).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	addr := flag.String("http", "", "serve streamable HTTP on this address instead of stdio")
	flag.Parse()
	s := newServer()
	if *addr != "" {
		h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
		log.Fatal(http.ListenAndServe(*addr, h))
	}
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}

func newServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "spine-testserver", Version: "v0.0.1"}, nil)
	obj := map[string]any{"type": "object"}
	tool := func(name string, h mcp.ToolHandler) {
		s.AddTool(&mcp.Tool{Name: name, InputSchema: obj}, h)
	}
	tool("echo", func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(req.Params.Arguments)}}}, nil
	})
	tool("structured", func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args map[string]any
		if err := json.Unmarshal(req.Params.Arguments, &args); err != nil {
			return nil, err
		}
		return &mcp.CallToolResult{
			Content:           []mcp.Content{&mcp.TextContent{Text: "see structured content"}},
			StructuredContent: map[string]any{"ok": true, "args": args},
		}, nil
	})
	tool("meta", func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		tp, _ := req.Params.Meta["traceparent"].(string)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "traceparent=" + tp}}}, nil
	})
	tool("fail", func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "boom"}}}, nil
	})
	tool("hang", func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		fmt.Fprintln(os.Stderr, "hang: waiting") // tells a test the call is in flight
		<-ctx.Done()
		return nil, ctx.Err()
	})
	tool("crash", func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args struct{ Survive bool }
		_ = json.Unmarshal(req.Params.Arguments, &args)
		if args.Survive {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "alive " + strconv.Itoa(os.Getpid())}}}, nil
		}
		os.Exit(3)
		return nil, nil
	})
	return s
}
