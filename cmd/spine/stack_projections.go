package main

import "context"

// wireProjections adds the projections to the stack (filled in as the capability lands).
func (st *stack) wireProjections(ctx context.Context) error { return nil }
