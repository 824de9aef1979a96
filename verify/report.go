package verify

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints the report for people: each anomaly (at most max; 0
// prints all kept) with its kind and trace id, then a summary table of
// every kind and of what was checked, and the verdict line.
func (r *Report) WriteText(w io.Writer, max int) {
	for i, a := range r.Anomalies {
		if max > 0 && i >= max {
			fmt.Fprintf(w, "... and %d more (use --max 0 or --json)\n", len(r.Anomalies)-i)
			break
		}
		trace := a.TraceID
		if trace == "" {
			trace = "-"
		}
		fmt.Fprintf(w, "%-20s trace=%s", a.Kind, trace)
		if a.Where != "" {
			fmt.Fprintf(w, " at=%s", a.Where)
		}
		fmt.Fprintf(w, "  %s\n", a.Detail)
	}
	if kept := len(r.Anomalies); kept > 0 && kept < r.total() {
		fmt.Fprintf(w, "(%d anomalies kept of %d)\n", kept, r.total())
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "anomaly\tcount\t")
	for _, k := range Kinds {
		fmt.Fprintf(tw, "%s\t%d\t\n", k, r.Counts[k])
	}
	tw.Flush()
	var outs []string
	for _, o := range slices.Sorted(func(yield func(string) bool) {
		for k := range r.Outcomes {
			if !yield(k) {
				return
			}
		}
	}) {
		outs = append(outs, fmt.Sprintf("%s=%d", o, r.Outcomes[o]))
	}
	var recs int64
	for _, n := range r.Records {
		recs += n
	}
	fmt.Fprintf(w, "checked: %d records (%s), %d runs (%s), %d intents (%d dead-lettered), %d verdicts, %d artifacts, %d dead letters (%d unchecked), %d refused events recorded, %d undecodable, %d out of window\n",
		recs, r.Isolation, r.Runs, strings.Join(outs, " "), r.Intents, r.IntentsDeadLettered, r.Verdicts, r.Artifacts,
		r.DeadLetters, r.DeadLettersUnchecked, r.Refused, r.Undecodable, r.OutOfWindow)
	if len(r.Foreign) > 0 {
		var fs []string
		for _, t := range slices.Sorted(maps.Keys(r.Foreign)) {
			fs = append(fs, fmt.Sprintf("%s=%d", t, r.Foreign[t]))
		}
		fmt.Fprintf(w, "foreign: %s records on internal topics written outside a transaction (not by a Spine processor): counted, not judged\n", strings.Join(fs, " "))
	}
	if len(r.EndedIdle) > 0 {
		fmt.Fprintf(w, "note: %d partitions ended when nothing more came, short of their end offset: %s\n", len(r.EndedIdle), strings.Join(r.EndedIdle, ", "))
	}
	switch {
	case r.Projections != nil:
		fmt.Fprintf(w, "projections: %d records replayed, %d cells differ", r.Projections.Records, r.Projections.Diffs)
		if len(r.Projections.Skipped) > 0 {
			fmt.Fprintf(w, " (%d moving partitions not compared: %s)", len(r.Projections.Skipped), strings.Join(r.Projections.Skipped, ", "))
		}
		fmt.Fprintf(w, ", in %s", r.Projections.Took.Round(time.Millisecond))
		if r.SharedRead > 0 {
			fmt.Fprintf(w, "; %d of the records checked were read once for both", r.SharedRead)
		}
		fmt.Fprintln(w)
	case r.ProjectionsNote != "":
		fmt.Fprintln(w, r.ProjectionsNote)
	}
	scan := fmt.Sprintf("scan %s", r.ScanTook.Round(time.Millisecond))
	if r.SharedRead > 0 {
		scan = "scan and replay together" // one read: the scan ends with the replay
	}
	if r.Clean {
		fmt.Fprintf(w, "clean: no anomaly, in %s (%s)\n", r.Took.Round(time.Millisecond), scan)
		return
	}
	fmt.Fprintf(w, "ANOMALIES: %d, in %s (%s)\n", r.total(), r.Took.Round(time.Millisecond), scan)
}

func (r *Report) total() int {
	n := 0
	for _, c := range r.Counts {
		n += c
	}
	return n
}
