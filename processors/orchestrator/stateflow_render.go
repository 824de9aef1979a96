package orchestrator

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// StateView is one state of a stateflow as data for people and the API:
// GET /v1/stateflow and `spine stateflow` show these.
type StateView struct {
	State     string      `json:"state"`
	Event     string      `json:"event"`
	Entries   []EntryView `json:"entries"`
	Timeout   string      `json:"timeout,omitempty"`
	Retry     *RetryView  `json:"retry,omitempty"`
	Fallback  string      `json:"fallback,omitempty"`
	Terminal  bool        `json:"terminal,omitempty"`
	Transient bool        `json:"transient,omitempty"`
}

// EntryView is one entry of a state.
type EntryView struct {
	From []string `json:"from"`
	On   string   `json:"on"`
	When string   `json:"when,omitempty"`
}

// RetryView is a state's retry policy.
type RetryView struct {
	InitialInterval        string   `json:"initial_interval"`
	BackoffCoefficient     float64  `json:"backoff_coefficient"`
	MaximumInterval        string   `json:"maximum_interval"`
	MaximumAttempts        int32    `json:"maximum_attempts"`
	NonRetryableErrorKinds []string `json:"non_retryable_error_kinds,omitempty"`
	Jitter                 string   `json:"jitter"`
}

// View is a whole stateflow as data.
type View struct {
	Version string      `json:"version"`
	Source  string      `json:"source"`
	States  []StateView `json:"states"`
}

// View returns the stateflow as data, states in declaration order.
func (f *Stateflow) View() View {
	v := View{Version: f.version, Source: f.path}
	if v.Source == "" {
		v.Source = "built-in"
	}
	for _, st := range f.order {
		s := f.specs[st]
		sv := StateView{State: string(s.State), Event: string(s.Event), Fallback: string(s.Fallback), Terminal: s.Terminal, Transient: s.Transient}
		if s.Timeout > 0 {
			sv.Timeout = s.Timeout.String()
		}
		if r := s.Retry; r != nil {
			sv.Retry = &RetryView{InitialInterval: r.InitialInterval.String(), BackoffCoefficient: r.BackoffCoefficient,
				MaximumInterval: r.MaximumInterval.String(), MaximumAttempts: r.MaximumAttempts,
				NonRetryableErrorKinds: r.NonRetryableErrorKinds, Jitter: "full"}
		}
		for _, e := range s.Entry {
			ev := EntryView{On: string(e.On), When: e.When}
			for _, fr := range e.From {
				ev.From = append(ev.From, stateName(fr))
			}
			if e.anyFrom {
				ev.From = []string{"*"} // as written: every non-terminal state
			}
			sv.Entries = append(sv.Entries, ev)
		}
		v.States = append(v.States, sv)
	}
	return v
}

func stateName(s State) string {
	if s == StateNone {
		return "none"
	}
	return string(s)
}

// Text renders the stateflow as a table: state, entries, timeout, retry,
// fallback, event. Its bytes define the stateflow's Version.
func (f *Stateflow) Text() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "STATE\tENTRIES\tTIMEOUT\tRETRY\tFALLBACK\tEVENT")
	for _, sv := range f.View().States {
		var entries []string
		for _, e := range sv.Entries {
			s := strings.Join(e.From, ",") + " on " + e.On
			if e.When != "" {
				s += " when " + strings.Join(strings.Fields(e.When), " ")
			}
			entries = append(entries, s)
		}
		timeout := sv.Timeout
		switch {
		case sv.Terminal:
			timeout = "(terminal)"
		case sv.Transient:
			timeout = "(transient)"
		}
		retry := "-"
		if r := sv.Retry; r != nil {
			attempts := "unlimited"
			if r.MaximumAttempts > 0 {
				attempts = fmt.Sprintf("%d attempts", r.MaximumAttempts)
			}
			retry = fmt.Sprintf("%s, %s×%g ≤%s, full jitter", attempts, r.InitialInterval, r.BackoffCoefficient, r.MaximumInterval)
		}
		fallback := sv.Fallback
		if fallback == "" {
			fallback = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", sv.State, strings.Join(entries, "; "), timeout, retry, fallback, sv.Event)
	}
	w.Flush()
	return b.String()
}

// Mermaid renders the stateflow as a Mermaid stateDiagram-v2: one arrow per
// (from, to) labelled with its triggers (and guards), each state described
// by its event, timeout and retry.
func (f *Stateflow) Mermaid() string {
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	type arrow struct{ from, to State }
	labels := map[arrow][]string{}
	var arrows []arrow
	for _, st := range f.order {
		s := f.specs[st]
		for _, e := range s.Entry {
			l := string(e.On)
			if e.When != "" {
				l += " [" + strings.Join(strings.Fields(e.When), " ") + "]"
			}
			for _, fr := range e.From {
				a := arrow{fr, s.State}
				if _, ok := labels[a]; !ok {
					arrows = append(arrows, a)
				}
				if !slices.Contains(labels[a], l) {
					labels[a] = append(labels[a], l)
				}
			}
		}
	}
	for _, st := range f.order {
		s := f.specs[st]
		d := string(s.Event)
		if s.Timeout > 0 {
			d += ", timeout " + fmtDuration(s.Timeout)
		}
		if s.Retry != nil && s.Retry.MaximumAttempts != 1 {
			if s.Retry.MaximumAttempts == 0 {
				d += ", retry unlimited"
			} else {
				d += fmt.Sprintf(", %d attempts", s.Retry.MaximumAttempts)
			}
		}
		fmt.Fprintf(&b, "    %s : %s\n", s.State, d)
	}
	for _, a := range arrows {
		from := string(a.from)
		if a.from == StateNone {
			from = "[*]"
		}
		fmt.Fprintf(&b, "    %s --> %s : %s\n", from, a.to, mermaidEscape(strings.Join(labels[a], ", ")))
	}
	for _, st := range f.order {
		if f.specs[st].Terminal {
			fmt.Fprintf(&b, "    %s --> [*]\n", st)
		}
	}
	return b.String()
}

// mermaidEscape keeps a label on one line without Mermaid's separators.
func mermaidEscape(s string) string {
	return strings.NewReplacer(":", "#58;", ";", "#59;", "\n", " ").Replace(s)
}

func fmtDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "m") || strings.HasSuffix(s, "h") {
		return s
	}
	return d.String()
}
