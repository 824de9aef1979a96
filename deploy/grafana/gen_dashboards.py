"""Generates Spine's Grafana dashboards (dashboards/*.json) from the panel
lists below: edit here, run `python3 deploy/grafana/gen_dashboards.py`, and
commit both. go test ./deploy checks the JSON (queries, metrics, data
source) and runs it against a live `spine up`."""
import json
import os
DS = {"type": "prometheus", "uid": "prometheus"}

class B:
    def __init__(self):
        self.panels = []; self.y = 0; self.x = 0; self.id = 1; self.rowh = 0
    def row(self, title):
        self.newline()
        self.panels.append({"type": "row", "title": title, "id": self.id, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.id += 1; self.y += 1
    def newline(self):
        if self.x: self.y += self.rowh; self.x = 0; self.rowh = 0
    def panel(self, kind, title, targets, w=12, h=8, unit="short", desc="", extra=None):
        if self.x + w > 24: self.newline()
        p = {"type": kind, "title": title, "id": self.id, "datasource": DS,
             "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
             "description": desc,
             "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
             "options": {},
             "targets": [dict({"datasource": DS, "refId": chr(65+i), "expr": e, "legendFormat": l}) for i, (e, l) in enumerate(targets)]}
        if kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}, "tooltip": {"mode": "multi"}}
        if kind == "stat":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value", "graphMode": "area"}
        if extra: p["fieldConfig"]["defaults"].update(extra)
        self.panels.append(p); self.id += 1
        self.x += w; self.rowh = max(self.rowh, h)

def var(name, metric, label):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": f"label_values({metric}, {name})", "refId": "v"},
            "definition": f"label_values({metric}, {name})",
            "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "refresh": 2, "sort": 1}

def dash(uid, title, desc, b, variables):
    return {"uid": uid, "title": title, "description": desc, "tags": ["spine"], "timezone": "browser",
            "schemaVersion": 39, "version": 1, "editable": False, "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": variables},
            "annotations": {"list": []},
            "panels": b.panels}

F = '{contract_version=~"$contract_version", route=~"$route"}'

# ---- golden path
b = B()
b.row("Runs")
b.panel("stat", "Runs per second", [(f"sum(spine:runs:rate5m{F})", "runs/s")], w=6, h=5, unit="reqps")
b.panel("stat", "Error ratio (failed + timed out, 1h)", [(f"max(spine:runs_errors:ratio_rate1h{F})", "error ratio")], w=6, h=5, unit="percentunit",
        desc="SLO: at most 1% of runs end failed or timed_out.",
        extra={"thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "orange", "value": 0.005}, {"color": "red", "value": 0.01}]}})
b.panel("stat", "p95 intent to verdict", [(f"max(spine:run_duration_seconds:p95_5m{F})", "p95")], w=6, h=5, unit="s")
b.panel("stat", "Dead letters (1h)", [("sum(increase(spine_dlq_records_total[1h]))", "dlq")], w=6, h=5, unit="short")
b.panel("timeseries", "Runs by outcome", [(f"sum by (outcome) (spine:runs:rate5m{F})", "{{outcome}}")], unit="reqps",
        desc="Terminal events per second: completed, rejected (gate verdict), failed, timed_out.")
b.panel("timeseries", "Run duration, intent to verdict", [(f"max by (contract_version, route) (spine:run_duration_seconds:p50_5m{F})", "p50 {{contract_version}} {{route}}"),
                                                          (f"max by (contract_version, route) (spine:run_duration_seconds:p95_5m{F})", "p95 {{contract_version}} {{route}}")], unit="s")
b.row("Golden path hops: intent.received → dataplane.dispatched → artifact.delivered → gate.*")
b.panel("timeseries", "Events per hop", [(f"sum by (hop) (spine:golden_path_events:rate5m{F})", "{{hop}}")], unit="reqps",
        desc="Counted after each transaction commits, from the committed events: equal to counts read back from the thread.")
b.panel("timeseries", "p95 latency per hop (since the intent was received)", [(f"max by (hop) (spine:golden_path_latency_seconds:p95_5m{F})", "{{hop}}")], unit="s")
b.panel("timeseries", "Delivery ratio (artifact.delivered / dataplane.dispatched)", [(f"spine:golden_path_delivery:ratio_rate5m{F}", "{{contract_version}} {{route}}")], unit="percentunit")
b.panel("timeseries", "Gate failure ratio", [(f"spine:gate_checks:failure_ratio_rate5m{F}", "{{gate}} {{contract_version}} {{route}}")], unit="percentunit")
b.panel("timeseries", "Gate checks by outcome", [(f"sum by (gate, outcome) (rate(spine_gate_checks_total{F}[5m]))", "{{gate}} {{outcome}}")], unit="reqps")
b.panel("timeseries", "p99 latency per hop", [(f"max by (hop) (spine:golden_path_latency_seconds:p99_5m{F})", "{{hop}}")], unit="s")
b.row("Processors")
b.panel("timeseries", "Records handled", [("spine:processor_records:rate5m", "{{processor}} {{outcome}}")], unit="reqps")
b.panel("timeseries", "Dead letters by code", [("spine:dlq_records:rate5m", "{{processor}} {{code}}")], unit="reqps")
b.panel("timeseries", "Transaction time p99", [("spine:processor_transaction_seconds:p99_5m", "{{processor}}")], unit="s")
b.panel("timeseries", "Aborted transactions", [("spine:processor_transactions_aborted:ratio_rate5m", "{{processor}}")], unit="percentunit")
b.panel("timeseries", "Blocked by a transient error", [("max by (processor, instance) (spine_processor_blocked)", "{{processor}} {{instance}}")], unit="short")
b.panel("timeseries", "Instances up", [('sum by (service) (up{job="spine"})', "{{service}}")], unit="short")
b.row("Kafka clients (kprom)")
b.panel("timeseries", "Bytes produced", [("sum by (processor, topic) (rate(spine_kafka_produce_bytes_total[5m]))", "{{processor}} → {{topic}}")], unit="Bps")
b.panel("timeseries", "Bytes fetched", [("sum by (processor, topic) (rate(spine_kafka_fetch_bytes_total[5m]))", "{{topic}} → {{processor}}")], unit="Bps")
b.panel("timeseries", "Records buffered for produce", [("max by (processor) (spine_kafka_buffered_produce_records_total)", "{{processor}}")], unit="short")
b.panel("timeseries", "Connection errors", [("sum by (processor) (rate(spine_kafka_connect_errors_total[5m])) + sum by (processor) (rate(spine_kafka_read_errors_total[5m]))", "{{processor}}")], unit="reqps")
V = [var("contract_version", "spine_golden_path_events_total", "Contract"), var("route", "spine_golden_path_events_total", "Route")]
gp = dash("spine-golden-path", "Spine / Golden path",
          "One run's path: intent.received → dataplane.dispatched → artifact.delivered → gate.passed|gate.failed, its SLO and the processors that carry it.", b, V)

# ---- canary
c = B()
c.row("Traffic split")
c.panel("stat", "Canary share of runs", [('sum(spine:runs:rate5m{route="canary"}) / sum(spine:runs:rate5m)', "canary")], w=8, h=5, unit="percentunit")
c.panel("stat", "Baseline error ratio (30m)", [('max(spine:runs_errors:ratio_rate30m{route="baseline"})', "baseline")], w=8, h=5, unit="percentunit")
c.panel("stat", "Canary error ratio (30m)", [('max(spine:runs_errors:ratio_rate30m{route="canary"})', "canary")], w=8, h=5, unit="percentunit",
        extra={"thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 0.01}]}})
c.panel("timeseries", "Runs per second by route", [("sum by (route, contract_version) (spine:runs:rate5m)", "{{route}} ({{contract_version}})")], unit="reqps")
c.panel("timeseries", "Outcomes by route", [("sum by (route, outcome) (spine:runs:rate5m)", "{{route}} {{outcome}}")], unit="reqps")
c.row("Baseline (V1) against canary (V2)")
c.panel("timeseries", "Error ratio by route", [("max by (route) (spine:runs_errors:ratio_rate5m)", "{{route}} 5m"), ("max by (route) (spine:runs_errors:ratio_rate1h)", "{{route}} 1h")], unit="percentunit")
c.panel("timeseries", "p95 intent to verdict by route", [("max by (route) (spine:run_duration_seconds:p95_5m)", "{{route}}")], unit="s")
c.panel("timeseries", "p95 time to artifact.delivered by route", [('max by (route) (spine:golden_path_latency_seconds:p95_5m{hop="artifact.delivered"})', "{{route}}")], unit="s")
c.panel("timeseries", "Delivery ratio by route", [("max by (route) (spine:golden_path_delivery:ratio_rate5m)", "{{route}}")], unit="percentunit")
c.panel("timeseries", "Gate failure ratio by route", [("max by (gate, route) (spine:gate_checks:failure_ratio_rate5m)", "{{gate}} {{route}}")], unit="percentunit")
c.panel("timeseries", "Canary gate verdicts", [('sum by (outcome) (rate(spine_gate_checks_total{gate="canary"}[5m]))', "{{outcome}}")], unit="reqps")
cn = dash("spine-canary", "Spine / Canary",
          "The canary route (contract V2) against the baseline (V1) on the same projections: promote or roll back.", c, [])

for name, d in (("golden-path.json", gp), ("canary.json", cn)):
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards", name)
    with open(out, "w") as fh:
        json.dump(d, fh, indent=2, ensure_ascii=False); fh.write("\n")
