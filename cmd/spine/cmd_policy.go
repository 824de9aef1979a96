package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/spinerun/spine/gates"
)

func newPolicyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check a policy file (SPINE_POLICY) offline",
		Long: `Work with the policy gate's file: named CEL rules per stage (admission,
artifact), each with an effect and a message; see the README's "Policy".

'spine policy check FILE' compiles the file as the running stack would and
prints its version and rules, or exits 1 listing every problem with its line.
It needs no cluster.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usageError{errors.New("spine policy needs a subcommand: check")}
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file: its version and rules, or every problem with its line (exit 1)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if len(src) > gates.MaxPolicyBytes {
				return exitCodeError{exitError, fmt.Errorf("%s: %d bytes, more than %d", args[0], len(src), gates.MaxPolicyBytes)}
			}
			p, err := gates.ParsePolicy(src)
			var pe *gates.PolicyError
			if errors.As(err, &pe) {
				for _, prob := range pe.Problems {
					// file:line: rule name: message, as compilers print.
					where := args[0]
					if prob.Line > 0 {
						where += fmt.Sprintf(":%d", prob.Line)
					}
					msg := prob.Msg
					if prob.Rule != "" {
						msg = "rule " + prob.Rule + ": " + msg
					}
					fmt.Fprintf(a.stdout, "%s: %s\n", where, msg)
				}
				noun := "problems"
				if len(pe.Problems) == 1 {
					noun = "problem"
				}
				return exitCodeError{exitError, fmt.Errorf("%s: %d %s, policy refused", args[0], len(pe.Problems), noun)}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: valid, version %s, default %s, %d rules\n", args[0], p.Version(), p.Default(), len(p.Rules()))
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LINE\tSTAGE\tEFFECT\tRULE\tMESSAGE")
			for _, r := range p.Rules() {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Line, r.Stage, r.Effect, r.Name, r.Message)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, w := range p.Warnings() {
				fmt.Fprintf(a.stdout, "warning: %s\n", w)
			}
			return nil
		},
	})
	return cmd
}
