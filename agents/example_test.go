package agents_test

import (
	"fmt"

	"github.com/spinerun/spine/agents"
)

// A file with a model for summarize, whose canary tries another model, and
// an MCP tool for lookup; then a file with a mistake in every agent.
func ExampleParse() {
	f, err := agents.Parse("agents.yaml", []byte(`
agents:
  - kind: summarize
    executor: openai
    base_url: http://127.0.0.1:11434/v1
    model: llama3.2
    canary: { model: llama3.3 }
  - kind: lookup
    executor: mcp
    url: http://127.0.0.1:9000/mcp
    tool: lookup
`), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, a := range f.Agents {
		fmt.Println(a.Kind, a.Executor, a.Summary())
		if a.Canary != nil {
			fmt.Println("  canary:", a.Canary.Summary(), "overrides", a.Canary.Overrides)
		}
	}

	_, err = agents.Parse("agents.yaml", []byte(`
agents:
  - kind: summarize
    executor: gpt
  - kind: lookup
    executor: mcp
    tool: lookup
    temperature: 0.2
`), nil)
	fmt.Println(err)
	// Output:
	// summarize openai base_url=http://127.0.0.1:11434/v1 model=llama3.2
	//   canary: base_url=http://127.0.0.1:11434/v1 model=llama3.3 overrides [model]
	// lookup mcp tool=lookup url=http://127.0.0.1:9000/mcp
	// agents.yaml:4: agents[0].executor: "gpt" is not one of openai, mcp, synthetic
	// agents.yaml:5: agents[1].command: one of command (a stdio server to start) or url (a streamable HTTP endpoint) is required
	// agents.yaml:8: agents[1].temperature: not a setting of executor mcp (it is openai's; mcp settings: command, url, tool, connect_timeout)
}
