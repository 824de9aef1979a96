// Package deploy holds what runs Spine outside `spine up`: the pinned Apache
// Kafka broker for the real-Kafka test suite (deploy/kafka: Maven-fetched
// jars, `make kafka-up`, `make test-kafka`), the Prometheus scrape config,
// recording rules and SLO alerts (deploy/prometheus), and the provisioned
// Grafana dashboards (deploy/grafana) that the root docker-compose.yml and
// Dockerfile use.
//
// The package has no Go API. Its tests check the manifests, since no Docker
// engine runs in CI: the compose file sets only environment variables that
// pipeline.Config knows, with the required ones present and valid; the rules
// and dashboards are well-formed PromQL over metrics that Spine registers.
package deploy
