#!/usr/bin/env python3
"""Run two api-consumer binaries through the same scenarios against node-sim and
compare what an operator sees: --help, the exit code, every log line and the run
report. Times, durations, latencies, backoff delays and two-phase session ids are
left out of the comparison (they differ from run to run); everything else must match.

Run: python3 ci/compare-runs.py OLD_BINARY NEW_BINARY [--node-sim BINARY]

Each scenario starts from a reset cluster of three node-sim nodes, seeded and
faulted the same way for both binaries, and runs one group at a time so that the
order of events is the same. Prints one line per scenario (same / differs, with a
diff) and exits 1 when anything differs.
"""
import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

VOLATILE_KEYS = {"timestamp", "duration_ms", "started_at", "delay_ms", "retry_after_ms",
                 "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "latency",
                 "groups_per_sec", "eta_secs"}
SESSION = re.compile(r"api-consumer-[0-9a-f]{32}")

BASE = {
    "OPERATION": "create",
    "CONCURRENCY": "1",
    "MAX_RETRIES": "3",
    "RETRY_BASE_DELAY_MS": "5",
    "RETRY_MAX_DELAY_MS": "20",
    "PROGRESS_INTERVAL_SECS": "0",
    "LOG_FORMAT": "json",
}

# name: (extra variables, {node index: groups to seed}, {node index: faults})
SCENARIOS = {
    "create commits": ({"GROUP_IDS": "a,b,c"}, {0: ["b"]}, {}),
    "create rolls back, the group that existed survives": (
        {"GROUP_IDS": "team-ops,new"}, {0: ["team-ops"]},
        {2: {"fail_rate": 1.0, "fail_ops": ["create"]}}),
    "delete restores the records": (
        {"OPERATION": "delete", "GROUP_IDS": "g1,g2"}, {0: ["g1", "g2"], 1: ["g1", "g2"], 2: ["g1", "g2"]},
        {2: {"fail_rate": 1.0, "fail_ops": ["delete"]}}),
    "retries with throttling and 503s": (
        {"GROUP_IDS": ",".join(f"r{i}" for i in range(20))}, {},
        {1: {"throttle_rate": 0.3, "retry_after_secs": 0, "unavailable_rate": 0.2}}),
    "ambiguous answers are read back": (
        {"GROUP_IDS": ",".join(f"m{i}" for i in range(10))}, {},
        {0: {"ambiguous_rate": 0.5}}),
    "verify finds a partial group": (
        {"OPERATION": "verify", "GROUP_IDS": "partial,everywhere,nowhere"},
        {0: ["partial", "everywhere"], 1: ["partial", "everywhere"], 2: ["everywhere"]}, {}),
    "verify without ids lists the nodes": (
        {"OPERATION": "verify", "GROUP_IDS": None}, {0: ["x", "y"], 1: ["x"], 2: ["x"]}, {}),
    "dry run plans": (
        {"GROUP_IDS": "everywhere,partial,new", "DRY_RUN": "true"},
        {0: ["partial", "everywhere"], 1: ["everywhere"], 2: ["everywhere"]}, {}),
    "reconcile refuses a large prune": (
        {"OPERATION": "reconcile", "GROUP_IDS": "new", "PRUNE": "true", "PRUNE_MAX": "1"},
        {0: ["old1", "old2"], 1: ["old1"], 2: ["old2"]}, {}),
    "reconcile prunes": (
        {"OPERATION": "reconcile", "GROUP_IDS": "new", "PRUNE": "true"},
        {0: ["old1", "old2"], 1: ["old1"], 2: ["old2"]}, {}),
    "prior state from lists": (
        {"GROUP_IDS": ",".join(f"l{i}" for i in range(80)), "PRIOR_STATE": "list"},
        {0: [f"l{i}" for i in range(0, 80, 3)]}, {}),
    "two-phase create, another session on node 3": (
        {"GROUP_IDS": "tp1", "NODE_PROTOCOL": "two-phase"}, {}, {}),
    "two-phase delete": (
        {"OPERATION": "delete", "GROUP_IDS": "tp2", "NODE_PROTOCOL": "two-phase"}, {}, {}),
    "configuration error": ({"GROUP_IDS": "a", "CONCURRENCY": "0"}, {}, {}),
    "unreadable node": ({"GROUP_IDS": "u1", "NODES_EXTRA": "dead"}, {}, {}),
}


def call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read()


def prepare(urls, seeds, faults, two_phase):
    for url in urls:
        call(f"{url}/_sim/reset", "POST")
        call(f"{url}/_sim/faults", "PUT", {"protocol": "two-phase" if two_phase else "standard"})
    for index, groups in seeds.items():
        for group in groups:
            call(f"{urls[index]}/v1/group/", "POST", {"groupId": group})
    if two_phase:
        # Another session holds tp1 on node 3; tp2 exists everywhere.
        call(f"{urls[2]}/v1/group", "POST", {"groupId": "tp1", "sessionId": "someone-else"})
        for url in urls:
            for _ in range(2):
                call(f"{url}/v1/group", "POST", {"groupId": "tp2", "sessionId": "seed"})
    for index, patch in faults.items():
        call(f"{urls[index]}/_sim/faults", "PUT", patch)


def scrub(value):
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return SESSION.sub("api-consumer-<session>", value)
    return value


def run(binary, urls, extra, workdir):
    env = {"PATH": os.environ.get("PATH", "")}
    env.update(BASE)
    nodes = list(urls)
    if extra.get("NODES_EXTRA") == "dead":
        nodes.append("127.0.0.1:9")
    env["NODES"] = ",".join(nodes)
    for key, value in extra.items():
        if key == "NODES_EXTRA":
            continue
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    report = Path(workdir) / "report.json"
    report.unlink(missing_ok=True)
    env["REPORT_PATH"] = str(report)
    done = subprocess.run([binary], env=env, cwd=workdir, capture_output=True, timeout=120)
    lines = []
    for line in done.stdout.decode().splitlines():
        lines.append(json.dumps(scrub(json.loads(line)), sort_keys=False))
    shown = {"exit code": done.returncode, "log lines": sorted(lines)}
    if report.exists():
        shown["report"] = scrub(json.loads(report.read_text()))
    return json.dumps(shown, indent=1).splitlines()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--node-sim", default=str(Path(__file__).resolve().parent.parent
                                                  / "target" / "release" / "node-sim"))
    args = parser.parse_args()
    args.old, args.new = str(Path(args.old).resolve()), str(Path(args.new).resolve())
    sim = subprocess.Popen([args.node_sim, "--nodes", "3", "--base-port", "0", "--seed", "7"],
                           stdout=subprocess.PIPE, env={})
    urls = [sim.stdout.readline().decode().strip() for _ in range(3)]
    differs = 0
    try:
        help_old = subprocess.run([args.old, "--help"], capture_output=True).stdout.decode()
        help_new = subprocess.run([args.new, "--help"], capture_output=True).stdout.decode()
        diff = list(difflib.unified_diff(help_old.splitlines(), help_new.splitlines(),
                                         "old --help", "new --help", lineterm=""))
        print(f"{'same' if not diff else 'differs'}: --help")
        print("\n".join(diff))
        differs += bool(diff)
        with tempfile.TemporaryDirectory() as workdir:
            for name, (extra, seeds, faults) in SCENARIOS.items():
                two_phase = extra.get("NODE_PROTOCOL") == "two-phase"
                prepare(urls, seeds, faults, two_phase)
                old = run(args.old, urls, extra, workdir)
                prepare(urls, seeds, faults, two_phase)
                new = run(args.new, urls, extra, workdir)
                diff = list(difflib.unified_diff(old, new, "old", "new", lineterm=""))
                print(f"{'same' if not diff else 'differs'}: {name}")
                print("\n".join(diff))
                differs += bool(diff)
    finally:
        sim.terminate()
        sim.wait()
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
