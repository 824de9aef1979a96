// Package e2e proves the event thread end to end: the real parts — a
// Kafka-protocol broker (kfake, or Apache Kafka when KAFKA_BROKERS is set),
// Spine's schema registry, the orchestrator, dataplane and gates runner on
// the transactional pipeline loop — started in-process the way `spine up`
// wires them, or as child processes of the built `spine` binary
// (`spine run orchestrator|dataplane|gates`) for the crash tests.
//
// The package holds only tests and benchmarks. Scale them with environment
// variables:
//
//	E2E_INTENTS        intents of the golden-path test (default 2000)
//	E2E_CRASH_INTENTS  intents of the crash test (default 1500)
//	E2E_CRASH_KILLS    SIGKILLs in the crash test (default 4)
//	E2E_VERBOSE        non-empty: processor logs go to stderr
//
// `make bench` runs BenchmarkGoldenPath; e2e/PERFORMANCE.md holds the figures.
package e2e
