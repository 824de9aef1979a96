package main

import "context"

// wireRegistry adds the registry to the stack (filled in as the capability lands).
func (st *stack) wireRegistry(ctx context.Context) error { return nil }
