package main

import "context"

// wire builds the registry, the canary rollout, the processors and the
// projections onto the stack, in dependency order. Each part lives in its
// own stack_<part>.go file.
func (st *stack) wire(ctx context.Context) error {
	if err := st.wireRegistry(ctx); err != nil {
		return err
	}
	if err := st.wireCanary(ctx); err != nil {
		return err
	}
	if err := st.wireProcessors(ctx); err != nil {
		return err
	}
	return st.wireProjections(ctx)
}
