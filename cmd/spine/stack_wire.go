package main

import "context"

// wire builds the registry, processors and projections onto the stack, in
// dependency order. Each part lives in its own stack_<part>.go file.
func (st *stack) wire(ctx context.Context) error {
	if err := st.wireRegistry(ctx); err != nil {
		return err
	}
	if err := st.wireProcessors(ctx); err != nil {
		return err
	}
	return st.wireProjections(ctx)
}
