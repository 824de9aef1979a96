package dataplane

import (
	"fmt"

	"github.com/spinerun/spine/schemas/thread"
)

// Settings are the dataplane's own settings, read from the environment by
// the composition root (composed into the binary's Config). Every field
// documents its variable and default.
type Settings struct {
	// Concurrency is SPINE_DATAPLANE_CONCURRENCY, how many calls one
	// dataplane instance runs at once, across and within its partitions.
	// More dispatches wait in memory (up to 16× as many before the instance
	// pauses fetching). Default 64.
	Concurrency int `env:"SPINE_DATAPLANE_CONCURRENCY, default=64"`
	// MaxArtifactBytes is SPINE_MAX_ARTIFACT_BYTES, the largest artifact
	// kept; a larger one fails the call as artifact_too_large (not
	// retryable). At most 4 MiB. Default 1048576 (1 MiB).
	MaxArtifactBytes int `env:"SPINE_MAX_ARTIFACT_BYTES, default=1048576"`
}

// Validate checks the settings, returning every problem.
func (s *Settings) Validate() []error {
	var errs []error
	if s.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("SPINE_DATAPLANE_CONCURRENCY: %d must be at least 1", s.Concurrency))
	}
	if s.MaxArtifactBytes < 1 || s.MaxArtifactBytes > thread.MaxArtifactBytes {
		errs = append(errs, fmt.Errorf("SPINE_MAX_ARTIFACT_BYTES: %d must be in [1, %d]", s.MaxArtifactBytes, thread.MaxArtifactBytes))
	}
	return errs
}
