#!/usr/bin/env python3
"""Run the commands of the guides that need no cluster, so that the docs cannot drift.

Reads every ```sh block of README.md, manifests/README.md and docs/METRICS.md and
sorts each command (continued lines joined) into one of:

- run: executed as written, in one bash session per guide (variables and background
  processes carry over from one command to the next, as in a reader's shell). A command
  whose comment says `# exit N` must exit N; every other one must exit 0. `docker` is
  podman; `helm` is the helm given. A background node-sim is waited for until its ports
  accept connections.
- render: `helm upgrade --install <release> manifests/ ...` is rendered with
  `helm template` and the same arguments, then checked by `kubernetes-validate --strict`.
- client: `kubectl create secret|configmap ...` runs with `--dry-run=client -o yaml`,
  and what it prints is validated the same way.
- image: `docker build -t NAME .` tags the image CI built from the same Dockerfile (the
  builder stage needs a registry CI cannot reach; ci/chart-and-image.sh builds its output
  on the host with the same commands) as NAME.
- ci: a command that .ci/run itself runs (the test command, the demo, the benchmark).
- cluster: needs a Kubernetes cluster (kubectl, minikube, helm test/uninstall/repo, a
  chart from a remote repository, curl through a port-forward); listed, not run.

A command that fits none of these fails the run: a new kind of command must be sorted
here. Each guide runs in a scratch directory, .cache/doc-commands/<guide> (so cargo
finds the workspace and `manifests/` is a link to the chart), holding the files a reader
is assumed to have (FIXTURES).

Run: python3 ci/doc_commands.py --helm HELM --kubectl KUBECTL --validate KUBERNETES_VALIDATE --image IMAGE
"""
import argparse
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUIDES = ["README.md", "manifests/README.md", "docs/METRICS.md"]

# Files and variables the guides take for granted: the operator's CA and token.
FIXTURES = {
    "company-ca.pem": "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZ3VpZGUtZml4dHVyZQ==\n-----END CERTIFICATE-----\n",
}
VARIABLES = {"NODE_API_TOKEN": "a-token-for-the-guide"}

CLUSTER = [
    (r"^minikube\b", "minikube"),
    (r"^kubectl\b", "a cluster's API"),
    (r"^[A-Z_]+=\$\(kubectl\b", "a cluster's API"),
    (r"^helm (test|uninstall|repo)\b", "a release in a cluster"),
    (r"^helm upgrade --install \S+ [a-z0-9-]+/[a-z0-9-]+(\s|$)", "a chart from a remote repository"),
]


def commands(text):
    """(block number, command) for every command of every ```sh block."""
    found, block, lines, number = [], None, [], 0
    for line in text.splitlines():
        if block is None:
            if line.strip() == "```sh":
                block, number = [], number + 1
            continue
        if line.strip() == "```":
            block, lines = None, []
            continue
        lines.append(line)
        if line.rstrip().endswith("\\"):
            continue
        command = "\n".join(lines).strip()
        lines = []
        if command and not command.startswith("#"):
            found.append((number, command))
    return found


def words(command):
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split()


def expected_exit(command):
    match = re.search(r"#\s*exit (\d+)\b", command)
    return int(match.group(1)) if match else 0


def without_comment(command):
    """The command without its trailing comment (quotes respected)."""
    out, quote = [], None
    for index, char in enumerate(command):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or command[index - 1] in " \t"):
            break
        out.append(char)
    return "".join(out).rstrip()


def classify(command, block_commands, ci_script):
    """(kind, why) for one command; kind None when it fits no rule."""
    plain = without_comment(command)
    if re.match(r"^kubectl create (secret|configmap)\b", plain):
        return "client", "client-side dry run"
    for pattern, why in CLUSTER:
        if re.search(pattern, plain):
            return "cluster", why
    if re.match(r"^helm upgrade --install \S+ manifests/?(\s|$)", plain):
        return "render", "helm template"
    if re.match(r"^helm (template|lint)\b", plain):
        return "run", ""
    if re.fullmatch(r"docker build -t \S+ \.", plain):
        return "image", "the image CI built"
    if re.match(r"^(docker (run|stop)|cp|cargo run --bin|for p in)\b", plain) or re.match(r"^[A-Z_]+=", plain):
        return "run", ""
    if plain.startswith("curl"):
        if any("port-forward" in other for other in block_commands):
            return "cluster", "a port-forward"
        return "run", ""
    if plain.startswith(("cargo ", "bash bench/")):
        # .ci/run runs these itself, each on a line of its own (the benchmark
        # at smoke-test size, whatever scenarios the guide names).
        lines = [line.strip() for line in ci_script.splitlines()]
        program = plain.split(" --")[0] if plain.startswith("bash bench/") else plain
        if plain in lines or (program != plain and any(line.startswith(program + " ") for line in lines)):
            return "ci", "run by .ci/run"
    return None, ""


def node_sim_ports(command):
    if "node-sim" not in command:
        return []
    argv = words(command)

    def option(name, default):
        return int(argv[argv.index(name) + 1]) if name in argv else default

    base, count = option("--base-port", 8080), option("--nodes", 3)
    return list(range(base, base + count))


def script_for(guide, planned, args, out):
    """The bash session of one guide, and what it checks."""
    lines = [
        "set -u",
        "fail() { echo \"FAIL: $*\" >&2; exit 1; }",
    ]
    for index, (kind, command) in enumerate(planned):
        plain = without_comment(command)
        shown = plain.replace("\n", " ").replace("\\ ", "")
        lines.append(f"echo {shlex.quote(f'[{kind}] {shown}')}")
        if kind == "run":
            want = expected_exit(command)
            lines.append(f"{plain}\nrc=$?")
            if plain.endswith("&"):
                lines.append("rc=0")
            lines.append(f"[ $rc -eq {want} ] || fail \"exit $rc, the guide says {want}:\" {shlex.quote(shown)}")
            ports = node_sim_ports(plain)
            if ports:
                lines.append(
                    f"for port in {' '.join(map(str, ports))}; do for i in $(seq 600); do "
                    "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.5; done; "
                    "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || fail \"node-sim never listened on $port\"; done"
                )
        elif kind == "render":
            rendered = out / f"render-{index}.yaml"
            template = re.sub(r"^helm upgrade --install", "helm template", plain)
            lines.append(f"{template} >{shlex.quote(str(rendered))} || fail {shlex.quote(f'does not render: {shown}')}")
            lines.append(
                f"{shlex.quote(args.validate)} --strict --quiet {shlex.quote(str(rendered))} || fail {shlex.quote(f'invalid: {shown}')}"
            )
        elif kind == "client":
            made = out / f"client-{index}.yaml"
            lines.append(f"{plain} --dry-run=client -o yaml >{shlex.quote(str(made))} || fail {shlex.quote(f'kubectl refuses: {shown}')}")
            lines.append(
                f"{shlex.quote(args.validate)} --strict --quiet {shlex.quote(str(made))} || fail {shlex.quote(f'invalid: {shown}')}"
            )
        elif kind == "image":
            name = plain.split()[3]
            lines.append(f"podman tag {shlex.quote(args.image)} {shlex.quote(name)} || fail {shlex.quote(f'cannot tag {name}')}")
    return "\n".join(lines) + "\n"


def shims(directory, args):
    """helm, kubectl and docker as the guides call them."""
    for name, target in (("helm", args.helm), ("kubectl", args.kubectl), ("docker", shutil.which("podman") or "podman")):
        path = directory / name
        path.write_text(f"#!/bin/sh\nexec {shlex.quote(target)} \"$@\"\n")
        path.chmod(0o755)


def run_guide(guide, args, ci_script, tally):
    found = commands((ROOT / guide).read_text())
    planned, unsorted = [], []
    for number, command in found:
        block = [c for n, c in found if n == number]
        kind, why = classify(command, block, ci_script)
        if kind is None:
            unsorted.append(command)
            continue
        tally.setdefault(kind, []).append((guide, command, why))
        if kind != "cluster" and kind != "ci":
            planned.append((kind, command))
    if unsorted:
        for command in unsorted:
            print(f"FAIL: {guide}: no rule for this command; sort it in ci/doc_commands.py:\n  {command}", file=sys.stderr)
        return False
    if not planned:
        print(f"FAIL: {guide}: no command to run (did the guide's ```sh blocks go?)", file=sys.stderr)
        return False
    scratch = ROOT / ".cache" / "doc-commands" / guide.replace("/", "-")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    (scratch / "manifests").symlink_to(ROOT / "manifests")
    (scratch / "docs").symlink_to(ROOT / "docs")
    for name, content in FIXTURES.items():
        (scratch / name).write_text(content)
    bin_dir = scratch / ".bin"
    bin_dir.mkdir()
    shims(bin_dir, args)
    out = pathlib.Path(tempfile.mkdtemp(prefix="doc-commands-"))
    script = scratch / ".session.sh"
    script.write_text(script_for(guide, planned, args, out))
    env = dict(os.environ, **VARIABLES, PATH=f"{bin_dir}:{os.environ['PATH']}")
    containers = [m.group(1) for _, c in planned for m in [re.search(r"--name (\S+)", c)] if m]
    print(f"--- {guide}: {len(planned)} commands to run, in {scratch.relative_to(ROOT)}")
    # Its own process group, so that whatever the guide left in the background
    # (a node-sim under cargo run) ends with it.
    session = subprocess.Popen(["bash", str(script)], cwd=scratch, env=env, start_new_session=True)
    try:
        status = session.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"FAIL: {guide}: still running after {args.timeout} s", file=sys.stderr)
        status = 1
    finally:
        end_group(session)
        for name in containers:
            subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)
        shutil.rmtree(out, ignore_errors=True)
    return status == 0


def end_group(session):
    """Stops the guide's process group, and waits until none of it is left,
    so that a node-sim it started no longer holds its ports."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(session.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            session.poll()
            try:
                os.killpg(session.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    session.poll()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--helm", required=True)
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--validate", required=True, help="the kubernetes-validate program")
    parser.add_argument("--image", required=True, help="the image CI built, tagged as each `docker build` names it")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per guide")
    args = parser.parse_args()
    ci_script = (ROOT / ".ci" / "run").read_text()
    tally = {}
    ok = all([run_guide(guide, args, ci_script, tally) for guide in GUIDES])
    print("--- the guides' commands:")
    for kind in ("run", "render", "client", "image", "ci", "cluster"):
        print(f"{kind:>8}: {len(tally.get(kind, []))}")
    for guide, command, why in tally.get("cluster", []):
        print(f"  needs {why} ({guide}): {without_comment(command).splitlines()[0]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
