"""Renders the chart with `helm template` for the chart tests.

Every test that takes the `render` fixture runs once per helm binary named in
HELM_BINARIES (colon-separated; ci/chart-and-image.sh passes helm 3 and helm 4),
or with `helm` from PATH.
"""

import functools
import os
import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "manifests"
EXAMPLES = sorted((CHART / "ci").glob("*.yaml"))


def helm_binaries():
    return [path for path in os.environ.get("HELM_BINARIES", "helm").split(":") if path]


class Rendered:
    """The documents of one rendering, with lookups by kind and name."""

    def __init__(self, text):
        self.text = text
        self.docs = [doc for doc in yaml.safe_load_all(text) if doc]

    def kind(self, kind):
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind):
        found = self.kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
        return found[0]

    def named(self, kind, name):
        found = [doc for doc in self.kind(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"no {kind} named {name}"
        return found[0]

    def env(self):
        """The job's environment: the data of the ConfigMap its pod loads."""
        spec = self.job_spec()["template"]["spec"]
        [container] = spec["containers"]
        [source] = container["envFrom"]
        return self.named("ConfigMap", source["configMapRef"]["name"])["data"]

    def job_spec(self):
        jobs, crons = self.kind("Job"), self.kind("CronJob")
        assert len(jobs) + len(crons) == 1, "expected one Job or one CronJob"
        return jobs[0]["spec"] if jobs else crons[0]["spec"]["jobTemplate"]["spec"]

    def pod_specs(self):
        """Every pod spec in the rendering, by a readable name."""
        specs = {}
        for doc in self.docs:
            kind, name = doc["kind"], doc["metadata"]["name"]
            if kind == "Pod":
                specs[f"Pod/{name}"] = doc["spec"]
            elif kind in ("Job", "StatefulSet"):
                specs[f"{kind}/{name}"] = doc["spec"]["template"]["spec"]
            elif kind == "CronJob":
                specs[f"{kind}/{name}"] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return specs


class HelmError(Exception):
    pass


@functools.lru_cache(maxsize=None)
def _render(helm, release, namespace, args):
    result = subprocess.run(
        [helm, "template", release, str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HelmError(result.stderr)
    return Rendered(result.stdout)


@pytest.fixture(params=helm_binaries(), ids=lambda path: os.path.basename(path))
def helm(request):
    return request.param


@pytest.fixture
def render(helm):
    """render(*args, release="api-consumer", namespace="default") -> Rendered."""

    def run(*args, release="api-consumer", namespace="default"):
        return _render(helm, release, namespace, tuple(str(arg) for arg in args))

    return run


@functools.lru_cache(maxsize=None)
def _notes(helm, args):
    result = subprocess.run(
        [helm, "install", "api-consumer", str(CHART), "--dry-run=client", "--namespace", "default", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split("\nNOTES:\n", 1)[1]


@pytest.fixture(scope="session")
def helm4():
    """A helm 4 binary: helm 3's `install --dry-run` needs a cluster."""
    for path in helm_binaries():
        version = subprocess.run([path, "version", "--short"], capture_output=True, text=True, check=True)
        if version.stdout.startswith("v4."):
            return path
    raise RuntimeError(f"no helm 4 among {helm_binaries()}")


@pytest.fixture
def notes(helm4):
    """notes(*args) -> the NOTES.txt that `helm install` would print."""

    def run(*args):
        return _notes(helm4, tuple(str(arg) for arg in args))

    return run


@pytest.fixture
def render_error(helm):
    """The error output of a rendering that must fail."""

    def run(*args):
        with pytest.raises(HelmError) as error:
            _render(helm, "api-consumer", "default", tuple(str(arg) for arg in args))
        return str(error.value)

    return run
