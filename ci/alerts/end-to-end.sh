#!/usr/bin/env bash
# The chart's alert rules end to end, on loopback: a real Prometheus scrapes a
# real Pushgateway with honor_labels and evaluates the rules; the job runs
# against a node that refuses connections, exits 1 and pushes its metrics;
# Prometheus must then report ApiConsumerLastRunFailed firing for the job,
# asked through its HTTP API.
#
#   ci/alerts/end-to-end.sh RULES PROMETHEUS PUSHGATEWAY API_CONSUMER PYTHON
#
# RULES is a Prometheus rule file (the PrometheusRule's groups); the others
# are the binaries to run. ci/chart-and-image.sh calls it.
set -euo pipefail
rules=$1 prometheus=$2 pushgateway=$3 job=$4 python=$5
dir=$(mktemp -d)
pids=()
cleanup() {
    if [ "${#pids[@]}" -gt 0 ]; then
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

read -r gw_port prom_port < <("$python" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

"$pushgateway" --web.listen-address="127.0.0.1:$gw_port" >"$dir/pushgateway.log" 2>&1 &
pids+=($!)
cp "$rules" "$dir/rules.yaml"
cat >"$dir/prometheus.yml" <<CONFIG
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:$gw_port"]
CONFIG
"$prometheus" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$dir/prometheus.log" 2>&1 &
pids+=($!)

# The gateway must be up before the job pushes: a push that fails is only a
# WARN line in the job's log.
if ! "$python" - "$gw_port" <<'READY'
import sys, time, urllib.request
deadline = time.time() + 30
while time.time() < deadline:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/-/ready", timeout=2)
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
READY
then
    echo "FAIL: the Pushgateway was not ready within 30 s" >&2
    tail -n 20 "$dir/pushgateway.log" >&2 || true
    exit 1
fi

show_logs() {
    tail -n 20 "$dir/job.log" "$dir/prometheus.log" "$dir/pushgateway.log" >&2 || true
}

code=0
env -i METRICS_PUSHGATEWAY_URL="http://127.0.0.1:$gw_port" NODES=http://127.0.0.1:1 \
    OPERATION=create GROUP_IDS=alert-e2e MAX_RETRIES=0 WRITE_SETTLE_MS=0 \
    "$job" >"$dir/job.log" 2>&1 || code=$?
if [ "$code" != 1 ]; then
    echo "FAIL: the job exited $code, expected 1" >&2
    show_logs
    exit 1
fi

# The check manifests/README.md gives ("Metrics and alerts"): the push is on
# the gateway under the job's default job label.
pushed=$("$python" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$gw_port/metrics" | grep '^api_consumer_exit_code' || true)
if [ "$pushed" != 'api_consumer_exit_code{instance="",job="api-consumer"} 1' ]; then
    echo "FAIL: the gateway shows '$pushed' for api_consumer_exit_code" >&2
    show_logs
    exit 1
fi
echo "the gateway holds the push: $pushed"

if ! firing=$("$python" - "$prom_port" <<'PROBE'
import json, sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/api/v1/alerts"
deadline = time.time() + 90
while time.time() < deadline:
    try:
        alerts = json.load(urllib.request.urlopen(url, timeout=5))["data"]["alerts"]
    except OSError:
        alerts = []
    for alert in alerts:
        labels = alert["labels"]
        if labels.get("alertname") == "ApiConsumerLastRunFailed" and alert["state"] == "firing":
            print(f'job {labels.get("job")}, value {alert["value"]}')
            sys.exit(0)
    time.sleep(1)
sys.exit(1)
PROBE
); then
    echo "FAIL: ApiConsumerLastRunFailed did not fire within 90 s" >&2
    show_logs
    exit 1
fi
echo "a run that exited 1 pushed its metrics; Prometheus fired ApiConsumerLastRunFailed ($firing)"
