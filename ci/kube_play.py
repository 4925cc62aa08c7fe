"""Inputs for `podman kube play` from the chart's rendered manifests, and a
check of the job's log lines.

podman plays Pods (and ConfigMaps and claims beside them), not Jobs or StatefulSets, so
the pod templates are taken out and wrapped in a Pod the way the controllers
would: the Job's template as is, a StatefulSet's with the pod's name and its
`apps.kubernetes.io/pod-index` label (and without what podman cannot play
faithfully, see node()).

Usage:
  kube_play.py job RENDERED OUT         ConfigMaps, claims and the Job's pod (an
                                        Indexed Job: one pod per index, named
                                        JOB-INDEX, with JOB_COMPLETION_INDEX
                                        set as the Job controller sets it);
                                        prints the pod names
  kube_play.py node RENDERED INDEX OUT  the demo StatefulSet's pod INDEX; prints
                                        the DNS name the headless Service gives it
  kube_play.py test RENDERED OUT        ConfigMaps and the `helm test` pod
  kube_play.py logs FILE EXIT_CODE      every line a JSON log object, the last
                                        the run summary with EXIT_CODE
"""

import copy
import json
import sys

import yaml


def load(path):
    with open(path, encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc]


def one(docs, kind):
    found = [doc for doc in docs if doc["kind"] == kind]
    if len(found) != 1:
        sys.exit(f"expected one {kind} in the rendered chart, found {len(found)}")
    return found[0]


def pod(name, template, extra_labels=None):
    metadata = copy.deepcopy(template["metadata"])
    metadata["name"] = name
    metadata.setdefault("labels", {}).update(extra_labels or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": copy.deepcopy(template["spec"])}


def config(docs):
    """ConfigMaps, and claims, which podman makes into named volumes."""
    found = []
    for doc in docs:
        if doc["kind"] == "PersistentVolumeClaim":
            # A kubelet applies the pod's fsGroup to the volume; podman
            # leaves it to root unless the claim names an owner.
            doc = copy.deepcopy(doc)
            doc["metadata"].setdefault("annotations", {}).update(
                {"volume.podman.io/uid": "65532", "volume.podman.io/gid": "65532"}
            )
        if doc["kind"] in ("ConfigMap", "PersistentVolumeClaim"):
            found.append(doc)
    return found


def dump(docs, path):
    with open(path, "w", encoding="utf-8") as file:
        yaml.safe_dump_all(docs, file, sort_keys=False)


def job(rendered, out):
    docs = load(rendered)
    the_job = one(docs, "Job")
    name, spec = the_job["metadata"]["name"], the_job["spec"]
    if spec.get("completionMode") != "Indexed":
        dump(config(docs) + [pod(name, spec["template"])], out)
        print(name)
        return
    pods = []
    for index in range(spec["completions"]):
        indexed = pod(f"{name}-{index}", spec["template"], {"batch.kubernetes.io/job-completion-index": str(index)})
        indexed["metadata"].setdefault("annotations", {})["batch.kubernetes.io/job-completion-index"] = str(index)
        for container in containers_of(indexed["spec"]):
            container.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
        pods.append(indexed)
    dump(config(docs) + pods, out)
    print(" ".join(p["metadata"]["name"] for p in pods))


def containers_of(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def node(rendered, index, out):
    docs = load(rendered)
    sts = one(docs, "StatefulSet")
    service = one(docs, "Service")
    name = f"{sts['metadata']['name']}-{index}"
    node_pod = pod(name, sts["spec"]["template"], {"apps.kubernetes.io/pod-index": str(index)})
    # Two things podman 4 does unlike a kubelet: it publishes each
    # containerPort on the same port of the host (so the second node would
    # collide with the first), and it runs httpGet probes with curl inside the
    # container (the image has none). The pods reach each other over the
    # podman network without them, and the job's init container waits for
    # /healthz itself.
    for container in node_pod["spec"]["containers"]:
        for field in ("ports", "readinessProbe", "livenessProbe"):
            container.pop(field, None)
    dump([node_pod], out)
    namespace = sts["metadata"].get("namespace", "default")
    print(f"{name}.{service['metadata']['name']}.{namespace}.svc.cluster.local")


def test(rendered, out):
    docs = load(rendered)
    hooks = [d for d in docs if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    if len(hooks) != 1:
        sys.exit(f"expected one helm test pod, found {len(hooks)}")
    dump([doc for doc in config(docs) if doc["kind"] == "ConfigMap"] + hooks, out)
    print(hooks[0]["metadata"]["name"])


def logs(path, exit_code):
    with open(path, encoding="utf-8") as file:
        lines = file.read().splitlines()
    if not lines:
        sys.exit(f"{path}: no log lines")
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            sys.exit(f"{path}:{number}: not a JSON line ({error}): {line!r}")
        missing = {"timestamp", "level", "severity", "message"} - entry.keys()
        if not isinstance(entry, dict) or missing:
            sys.exit(f"{path}:{number}: log object without {sorted(missing)}: {line!r}")
    summary = json.loads(lines[-1])
    if summary["message"] != "run summary" or summary.get("exit_code") != exit_code:
        sys.exit(f"{path}: last line is not a run summary with exit_code {exit_code}: {lines[-1]!r}")
    print(f"{len(lines)} JSON log lines, summary: exit_code {summary['exit_code']}, "
          f"committed {summary.get('committed')}, rolled_back {summary.get('rolled_back')}")


def main(argv):
    commands = {"job": (job, 2), "node": (node, 3), "test": (test, 2), "logs": (logs, 2)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        sys.exit(__doc__)
    function, _ = commands[argv[1]]
    args = argv[2:]
    if argv[1] in ("node", "logs"):
        args[1] = int(args[1])  # the pod's index; the expected exit code
    function(*args)


if __name__ == "__main__":
    main(sys.argv)
