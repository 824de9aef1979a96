// Package pipeline knows Kafka: configuration from the environment, the topic
// layout, client options, the embedded kfake broker, and (in later files) the
// transactional consume→process→produce loop that every processor runs on.
package pipeline
