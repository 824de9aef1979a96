// Package promreg shares Prometheus collectors among the parts of one
// process that register the same metrics on one registry (several
// processors of `spine up`, say), instead of failing on the second
// registration.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterOrGet registers c on reg, or returns the identical collector
// already registered there, so parts sharing a registry share series. A nil
// reg registers nothing and returns c.
func RegisterOrGet[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Tolerant lets code that MustRegisters (kprom, through promauto) share a
// registry: a collector registered twice keeps the first one; any other
// registration error panics, as MustRegister does.
type Tolerant struct{ prometheus.Registerer }

// MustRegister registers each collector, passing over those already
// registered.
func (r Tolerant) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			panic(err)
		}
	}
}
