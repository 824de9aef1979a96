package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/spinerun/spine/agents"
)

func newAgentsCmd(a *app) *cobra.Command {
	var file, api, format string
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "Show the agents a running stack has loaded, or check an agents file",
		Long: `An agents file (SPINE_AGENTS) maps each intent kind to the executor that
serves it (openai, mcp or synthetic) and its settings, with an optional canary
block that overrides them for the v2 route.

Without --file, print what the running stack at --api (default: the one
SPINE_HTTP_ADDR names on localhost) has loaded, from GET /v1/agents. With
--file, check a file offline: print it, or every problem in it (file, line,
key) and exit 1. API keys are never shown: only the variable that holds one,
and whether it is set.`,
		Example: `  spine agents
  spine agents --api http://spine.internal:8080 -o json
  spine agents --file agents.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("--output %q: want text or json", format)}
			}
			var v agents.View
			source := ""
			if file != "" {
				f, err := agents.Load(file, os.LookupEnv)
				if err != nil {
					var list *agents.Errors
					if errors.As(err, &list) {
						for _, e := range list.Errs {
							fmt.Fprintln(a.stderr, e)
						}
						return exitCodeError{exitError, fmt.Errorf("%s: %d problem(s); nothing would start", file, len(list.Errs))}
					}
					return err
				}
				v = f.Redacted(os.LookupEnv)
			} else {
				if api == "" {
					cfg, err := a.config(cmd.Context())
					if err != nil {
						return err
					}
					api = localURL(cfg, cfg.HTTPAddr)
				}
				var err error
				if v, err = fetchAgents(cmd.Context(), api); err != nil {
					return err
				}
				source = api
			}
			if format == "json" {
				return printJSON(a.stdout, v)
			}
			return printAgents(a.stdout, source, v)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "check this agents file offline instead of asking a running stack")
	cmd.Flags().StringVar(&api, "api", "", "the running stack's HTTP API (default http://localhost + SPINE_HTTP_ADDR)")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text or json")
	return cmd
}

// fetchAgents asks the stack at api for GET /v1/agents.
func fetchAgents(ctx context.Context, api string) (agents.View, error) {
	var v agents.View
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := strings.TrimSuffix(api, "/") + "/v1/agents"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return v, usageError{fmt.Errorf("--api %q: %w", api, err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, fmt.Errorf("is spine up at %s? (start it with `spine up`, or name it with --api): %w", api, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return v, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("GET %s: %s: %s (is this a Spine that serves /v1/agents?)", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("GET %s: %w", url, err)
	}
	return v, nil
}

// printAgents prints a view as a table: one row per kind and route, the
// canary's row with only what it overrides.
func printAgents(w io.Writer, source string, v agents.View) error {
	switch {
	case v.File == "" && source != "":
		fmt.Fprintf(w, "%s: no agents file (SPINE_AGENTS unset): the synthetic executor serves every kind\n", source)
	case source != "":
		fmt.Fprintf(w, "%s: agents from %s\n", source, v.File)
	default:
		fmt.Fprintf(w, "%s: %d agent(s), valid\n", v.File, len(v.Agents))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tROUTE\tEXECUTOR\tSETTINGS")
	for _, ag := range v.Agents {
		fmt.Fprintf(tw, "%s\tbaseline\t%s\t%s\n", ag.Kind, ag.Executor, agents.SummaryOf(ag.Settings))
		c := ag.Canary
		if c == nil {
			continue
		}
		shown := map[string]any{}
		for _, k := range c.Overrides {
			if val, ok := c.Settings[k]; ok {
				shown[k] = val
			}
		}
		if c.Executor != ag.Executor {
			shown = c.Settings
		}
		settings := agents.SummaryOf(shown)
		if len(c.Overrides) == 0 {
			settings = "(the baseline's)"
		}
		fmt.Fprintf(tw, "%s\tcanary\t%s\t%s\n", ag.Kind, c.Executor, settings)
	}
	return tw.Flush()
}
