package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
)

func newArtifactsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "artifacts",
		Short: "Fetch artifacts by the id artifact.delivered carries",
		Long: `Every artifact the data plane delivers is kept whole on the compacted
spine.artifacts topic, written in the same transaction as the
artifact.delivered event that names it. Its id (art-<time>-<hash>) is a claim
check: the lookup reads only the partition the id hashes to, from the offset
of the dispatch time the id carries.`,
	}
	var info bool
	get := &cobra.Command{
		Use:   "get <artifact_id>",
		Short: "Print an artifact's content, byte for byte",
		Long: `Print the artifact's content to standard output exactly as the executor
returned it. With --info, print its content type, size, run and location
instead.`,
		Example: `  spine artifacts get art-19a3c5e2f10-4bf92f3577b34da6a3ce929d0e0e4736
  spine artifacts get art-19a3c5e2f10-4bf92f3577b34da6a3ce929d0e0e4736 --info
  spine trace <trace_id> | grep artifact=`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			return runArtifactGet(cmd.Context(), a, cfg, args[0], info)
		},
	}
	get.Flags().BoolVar(&info, "info", false, "print the content type, size, run and location instead of the content")
	cmd.AddCommand(get)
	return cmd
}

func runArtifactGet(ctx context.Context, a *app, cfg *stack.Config, id string, info bool) error {
	opts, err := cliKafkaOpts(cfg)
	if err != nil {
		return err
	}
	art, err := projections.NewArtifacts(opts, pipeline.NewLayout(&cfg.Config)).Get(ctx, id)
	if errors.Is(err, projections.ErrBadArtifactID) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	if info {
		fmt.Fprintf(a.stdout, "artifact     %s\ntrace        %s\ncontent-type %s\nsize         %d bytes\nlocation     %s/%d@%d (%d records read)\n",
			art.ID, art.TraceID, art.ContentType, len(art.Content), pipeline.NewLayout(&cfg.Config).Artifacts(), art.Partition, art.Offset, art.Read)
		return nil
	}
	_, err = a.stdout.Write(art.Content)
	return err
}
