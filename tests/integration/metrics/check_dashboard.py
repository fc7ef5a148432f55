#!/usr/bin/env python3
"""check_dashboard.py DASHBOARD: every query of the Grafana dashboard is PromQL that Prometheus accepts.

Grafana's variables are replaced by what they stand for ($__rate_interval by 1m, $job and $instance by .*), each
expression becomes a recording rule, and `promtool check rules` parses them all. Also: the file is JSON, every
panel but a row has at least one query, panel ids are unique and panels do not overlap on the grid."""
import json
import os
import subprocess
import sys
import tempfile


def queries(dashboard):
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            sys.exit(f"panel {panel['title']!r} has no query")
        for target in targets:
            yield panel["title"], target["expr"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield "annotation " + annotation["name"], annotation["expr"]


def check_layout(dashboard):
    ids, cells = set(), {}
    for panel in dashboard["panels"]:
        if panel["id"] in ids:
            sys.exit(f"panel id {panel['id']} used twice")
        ids.add(panel["id"])
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    sys.exit(f"panels {cells[(x, y)]!r} and {panel['title']!r} overlap at {x},{y}")
                cells[(x, y)] = panel["title"]


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        dashboard = json.load(f)
    check_layout(dashboard)
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    count = 0
    for title, expr in queries(dashboard):
        for variable, value in (("$__rate_interval", "1m"), ("$job", ".*"), ("$instance", ".*")):
            expr = expr.replace(variable, value)
        if "$" in expr:
            sys.exit(f"{title}: unknown variable in {expr}")
        count += 1
        lines.append(f"      - record: dashboard:query_{count}")
        lines.append(f"        expr: {json.dumps(expr)}")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as rules:
        rules.write("\n".join(lines) + "\n")
    try:
        result = subprocess.run(["promtool", "check", "rules", rules.name], capture_output=True, text=True)
    finally:
        os.unlink(rules.name)
    if result.returncode != 0:
        sys.exit(result.stdout + result.stderr)
    print(f"ok: {count} queries parse")


if __name__ == "__main__":
    main()
