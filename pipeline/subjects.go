package pipeline

import "github.com/spinerun/spine/schemas"

// ContractSubjects maps every thread topic's value subject
// (TopicNameStrategy, "<topic>-value") to the contract its records carry:
// Intent on the intents topic, RuntimeEvent on every other thread topic.
// The DLQ has no subject: it keeps the original bytes.
func (l Layout) ContractSubjects() map[string]schemas.Contract {
	m := map[string]schemas.Contract{}
	for _, t := range l.ThreadTopics() {
		c := schemas.ContractRuntimeEvent
		if t == l.Intents() {
			c = schemas.ContractIntent
		}
		m[schemas.ValueSubject(string(t))] = c
	}
	return m
}
