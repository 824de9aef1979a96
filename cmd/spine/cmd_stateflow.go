package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/spinerun/spine/processors/orchestrator"
)

func newStateflowCmd(a *app) *cobra.Command {
	var file, format string
	cmd := &cobra.Command{
		Use:   "stateflow",
		Short: "Print the run stateflow: a table, a Mermaid state diagram or JSON",
		Long: `The stateflow is the orchestrator's machine: for each state of a run, its
entries (from which states, on which trigger, under which CEL guard), its
timeout, retry policy, fallback and the event it emits.

Without --file, print the stateflow the settings ask for: the file
SPINE_STATEFLOW names, else the built-in one with SPINE_EXEC_TIMEOUT,
SPINE_GATE_TIMEOUT, SPINE_QUEUE_TIMEOUT and SPINE_RETRY_*. With --file,
check a file offline: print it, or every problem in it (file and line) and
exit 1. A running stack serves the same as JSON on GET /v1/stateflow.`,
		Example: `  spine stateflow
  spine stateflow --format mermaid
  spine stateflow --file my-stateflow.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "table", "mermaid", "json":
			default:
				return usageError{fmt.Errorf("--format %q: want table, mermaid or json", format)}
			}
			var flow *orchestrator.Stateflow
			var err error
			if file != "" {
				src, rerr := os.ReadFile(file)
				if rerr != nil {
					return exitCodeError{exitError, rerr}
				}
				flow, err = orchestrator.ParseStateflow(file, src)
			} else {
				cfg, cerr := a.config(cmd.Context())
				if cerr != nil {
					return cerr
				}
				flow, err = cfg.Orchestrator.Flow()
			}
			if err != nil {
				var se *orchestrator.StateflowError
				if errors.As(err, &se) {
					for _, p := range se.Problems {
						if p.Line > 0 {
							fmt.Fprintf(a.stderr, "%s:%d: %s\n", se.Path, p.Line, p.Msg)
						} else {
							fmt.Fprintf(a.stderr, "%s: %s\n", se.Path, p.Msg)
						}
					}
					return exitCodeError{exitError, fmt.Errorf("%s: %d problem(s); the stateflow is refused", se.Path, len(se.Problems))}
				}
				return err
			}
			switch format {
			case "mermaid":
				_, err = fmt.Fprint(a.stdout, flow.Mermaid())
				return err
			case "json":
				return printJSON(a.stdout, flow.View())
			}
			src := flow.Path()
			if src == "" {
				src = "built-in"
			}
			fmt.Fprintf(a.stdout, "stateflow %s (%s)\n", flow.Version(), src)
			_, err = fmt.Fprint(a.stdout, flow.Text())
			return err
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "check this stateflow file offline instead of the configured one")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table, mermaid or json")
	return cmd
}
