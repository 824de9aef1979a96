package thread

import "strings"

// DriftKey is the record key of one intent kind and route on the drift
// topics (samples, the drift monitor's state, status): "<kind>/<route>",
// so that one kind and route's samples land on one partition and one
// instance owns its windows.
func DriftKey(kind, route string) string { return kind + "/" + route }

// driftTracePrefix starts the trace id of drift window events.
const driftTracePrefix = "drift/"

// DriftTrace is the trace id, and the key, of the gate.drift events the
// drift monitor writes for one intent kind and route, one per evaluated
// window: `spine trace --scan drift/<kind>/<route>` lists them. It is not a
// run's trace id.
func DriftTrace(kind, route string) string { return driftTracePrefix + DriftKey(kind, route) }

// IsDriftTrace reports whether trace is a DriftTrace: the event is a drift
// window's, about no one run.
func IsDriftTrace(trace string) bool { return strings.HasPrefix(trace, driftTracePrefix) }

// DriftWindowStat is the name the gates projection counts drift window
// outcomes under, apart from the runs' drift gate ("drift").
const DriftWindowStat = "drift_window"
