package main

// Commands whose capability lands in a later issue. Each is declared with its
// real usage so `--help` documents it; running it says what is missing.
// Each moves to its own cmd_<name>.go file as it is built.

import (
	"fmt"

	"github.com/spf13/cobra"
)

func notYet(name, issue string) func(*cobra.Command, []string) error {
	return func(*cobra.Command, []string) error {
		return fmt.Errorf("%s is not available in this build yet (%s)", name, issue)
	}
}

func newLoadtestCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "loadtest", Short: "Drive intents through the stack with canary routing and write a report", RunE: notYet("loadtest", "canary routing")}
}
