// Package adapters holds Spine's boundary translators, one subpackage per
// outside system: model APIs (openai), MCP tools (mcp), the synthetic
// executor (synthetic), HTTP ingress, identity verification, databases. Each
// adapter turns the outside format into canonical Go types from package
// schemas at the boundary and exports a constructor from its own config and
// the interface it implements (the dataplane's Executor, an ingress, a
// verifier), so nothing inside Spine speaks a vendor's format and no outside
// type crosses into canonical code. adapters/synthetic is the pattern.
package adapters
