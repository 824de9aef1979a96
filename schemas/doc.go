// Package schemas holds Spine's canonical contracts: the Avro .avsc files under
// avro/, the ContractVersion they are written in, the canonical Go types that
// every other package exchanges, and the Confluent wire-format serde.
//
// The .avsc files are the one source of truth for the wire; the Go types carry
// avro tags that mirror the newest contract (v2), and a test fails whenever
// the two disagree. Older contracts are strict subsets of the newest one with
// every added field defaulted, so v1 and v2 are FULL_TRANSITIVE compatible.
package schemas
