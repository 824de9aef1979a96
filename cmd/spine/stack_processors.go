package main

import "context"

// wireProcessors adds the processors to the stack (filled in as the capability lands).
func (st *stack) wireProcessors(ctx context.Context) error { return nil }
