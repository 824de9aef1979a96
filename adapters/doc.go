// Package adapters holds Spine's boundary translators, one subpackage per
// outside system (HTTP ingress, MCP tools, model vendor APIs, databases).
// Each adapter turns the outside format into canonical Go types from package
// schemas at the boundary, so nothing inside Spine speaks a vendor's format.
//
// The executor shipped today is the deterministic synthetic one in
// processors/dataplane/synthetic; real adapters plug into the dataplane's
// Executor interface without changing the thread.
package adapters
