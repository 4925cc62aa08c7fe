"""Tests of the chart's rendered output: what an operator relies on when the
Job runs, stops, fails or is upgraded."""

import json
import re

import pytest
import yaml

from conftest import CHART, EXAMPLES, ROOT

# The default values (the demo) and every example values file.
VALUES = [pytest.param((), id="default")] + [
    pytest.param(("-f", path), id=path.stem) for path in EXAMPLES
]
REAL_NODES = ("--set", "demo.enabled=false", "--set-json", 'config.nodes=["http://n1:8080","http://n2:8080"]')

JOB_VARIABLES = {
    "NODES", "OPERATION", "DRY_RUN", "PRUNE", "PRUNE_MAX", "PRIOR_STATE", "GROUP_IDS", "GROUP_IDS_FILE", "REQUEST_TIMEOUT_MS", "WRITE_SETTLE_MS", "CONNECT_TIMEOUT_MS",
    "MAX_RETRIES", "RETRY_BASE_DELAY_MS", "RETRY_MAX_DELAY_MS", "RUN_TIMEOUT_SECS",
    "ROLLBACK_TIMEOUT_SECS", "CONCURRENCY", "NODE_CONCURRENCY", "NODE_RATE_LIMIT", "NODE_DOWN_AFTER_FAILURES", "NODE_DOWN_WAIT_SECS", "MAX_FAILED_GROUPS",
    "PROGRESS_INTERVAL_SECS", "AUTH_TOKEN", "AUTH_TOKEN_FILE", "LOG_FORMAT", "LOG_LEVEL", "REPORT_PATH",
    "TERMINATION_MESSAGE_PATH", "CA_CERT_PATH", "JOURNAL_PATH", "SHARD_COUNT", "SHARD_INDEX",
    "JOB_COMPLETION_INDEX", "METRICS_PUSHGATEWAY_URL", "METRICS_JOB", "NODE_PROTOCOL",
}
PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUB\n-----END CERTIFICATE-----\n"


def containers(pod_spec):
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def job_container(rendered):
    [container] = rendered.job_spec()["template"]["spec"]["containers"]
    return container


# ------------------------------------------------------------- security


@pytest.mark.parametrize("values", VALUES)
def test_every_pod_meets_the_restricted_pod_security_profile(render, values):
    specs = render(*values).pod_specs()
    assert specs
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume, name
        for container in containers(spec):
            context = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["runAsNonRoot"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert not context.get("privileged"), where
            assert container["resources"]["requests"] and container["resources"]["limits"], where


def test_the_job_pod_never_restarts_in_place_and_reports_its_summary(render):
    pod = render().job_spec()["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["enableServiceLinks"] is False
    assert job_container(render())["terminationMessagePolicy"] == "FallbackToLogsOnError"


@pytest.mark.parametrize("values", VALUES)
def test_the_job_writes_its_summary_where_the_kubelet_reads_the_termination_message(render, values):
    rendered = render(*values)
    container = job_container(rendered)
    path = container["terminationMessagePath"]
    assert path == "/dev/termination-log"
    assert rendered.env()["TERMINATION_MESSAGE_PATH"] == path
    # An empty file (the job stopped before writing it) means the log's end.
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # No volume hides the file the kubelet mounts there.
    for mount in container["volumeMounts"]:
        assert not path.startswith(mount["mountPath"].rstrip("/") + "/"), mount


# ------------------------------------------------------------- deadlines


@pytest.mark.parametrize("values", VALUES)
def test_kubernetes_deadlines_leave_room_for_the_jobs_own(render, values):
    rendered = render(*values)
    env = rendered.env()
    run, rollback = int(env["RUN_TIMEOUT_SECS"]), int(env["ROLLBACK_TIMEOUT_SECS"])
    spec = rendered.job_spec()
    assert spec["activeDeadlineSeconds"] > run + rollback
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > rollback


def test_deadlines_follow_the_configured_budgets(render):
    rendered = render(
        "--set", "config.runTimeoutSecs=100", "--set", "config.rollbackTimeoutSecs=50",
        "--set", "job.activeDeadlineMarginSecs=60", "--set", "job.terminationGraceMarginSecs=7",
    )
    spec = rendered.job_spec()
    assert spec["activeDeadlineSeconds"] == 100 + 50 + 60
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 50 + 7
    assert rendered.env()["RUN_TIMEOUT_SECS"] == "100"
    assert rendered.env()["ROLLBACK_TIMEOUT_SECS"] == "50"


def test_margins_below_their_minimum_are_rejected(render_error):
    assert "terminationGraceMarginSecs" in render_error("--set", "job.terminationGraceMarginSecs=0")
    assert "activeDeadlineMarginSecs" in render_error("--set", "job.activeDeadlineMarginSecs=0")


def test_large_numbers_render_as_integers(render):
    env = render("--set", "config.retryMaxDelayMs=3600000", "--set", "config.nodeRateLimit=1000000",
                 "--set", "config.runTimeoutSecs=604800").env()
    assert env["RETRY_MAX_DELAY_MS"] == "3600000"
    assert env["NODE_RATE_LIMIT"] == "1000000"
    assert render("--set", "config.runTimeoutSecs=604800").job_spec()["activeDeadlineSeconds"] == 604800 + 20 + 300


# ------------------------------------------------------------- podFailurePolicy


def exit_code_actions(spec):
    actions = {}
    for rule in spec["podFailurePolicy"]["rules"]:
        on_exit = rule.get("onExitCodes")
        if on_exit:
            assert on_exit["operator"] == "In"
            for code in on_exit["values"]:
                actions.setdefault(code, rule["action"])
    return actions


@pytest.mark.parametrize("values", VALUES)
def test_pod_failure_policy_maps_the_exit_codes(render, values):
    rendered = render(*values)
    spec = rendered.job_spec()
    rules = spec["podFailurePolicy"]["rules"]
    # A disrupted pod (eviction, preemption, drain) never counts, whatever
    # its exit code: the rule must come before the exit-code rules.
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    actions = exit_code_actions(spec)
    # Sharded, a useless retry fails only its index; the others run on.
    stop = "FailIndex" if spec.get("completionMode") == "Indexed" else "FailJob"
    assert actions[2] == stop
    assert actions[4] == stop
    assert set(actions) == {1, 2, 3, 4}
    assert 0 not in actions
    name = job_container(rendered)["name"]
    for rule in rules[1:]:
        assert rule["onExitCodes"]["containerName"] == name
    assert spec["podReplacementPolicy"] == "Failed"
    retries = "backoffLimitPerIndex" if spec.get("completionMode") == "Indexed" else "backoffLimit"
    assert spec[retries] >= 0
    assert spec.get("ttlSecondsAfterFinished", 0) >= 0


def test_rolled_back_and_inconsistent_are_retried_by_default(render):
    actions = exit_code_actions(render().job_spec())
    assert actions[1] == "Count"
    assert actions[3] == "Count"


def test_the_actions_for_exit_codes_1_and_3_are_configurable(render):
    actions = exit_code_actions(
        render("--set", "job.onRolledBack=FailJob", "--set", "job.onInconsistent=FailJob").job_spec()
    )
    assert actions == {1: "FailJob", 2: "FailJob", 3: "FailJob", 4: "FailJob"}


# ------------------------------------------------------------- shards

SHARED_JOURNAL = ("--set", "journal.accessMode=ReadWriteMany")


def test_one_shard_is_a_plain_job(render):
    rendered = render()
    spec = rendered.job_spec()
    for field in ("completionMode", "completions", "parallelism", "backoffLimitPerIndex", "maxFailedIndexes"):
        assert field not in spec
    assert "SHARD_COUNT" not in rendered.env()


@pytest.mark.parametrize("cron", [False, True])
def test_shards_make_an_indexed_job_that_retries_each_index_on_its_own(render, cron):
    rendered = render("--set", "job.shards=4", *SHARED_JOURNAL, "--set", f"cronJob.enabled={str(cron).lower()}")
    spec = rendered.job_spec()
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == 4
    assert spec["parallelism"] == 4
    assert spec["backoffLimitPerIndex"] == 2
    # backoffLimit would count the failures of every index together.
    assert "backoffLimit" not in spec
    assert "maxFailedIndexes" not in spec
    # The index comes from JOB_COMPLETION_INDEX, which Kubernetes sets.
    env = rendered.env()
    assert env["SHARD_COUNT"] == "4"
    assert "SHARD_INDEX" not in env
    assert exit_code_actions(spec) == {1: "Count", 2: "FailIndex", 3: "Count", 4: "FailIndex"}


def test_shard_settings_are_passed_through(render):
    spec = render(
        "--set", "job.shards=8", "--set", "job.parallelism=3", "--set", "job.backoffLimitPerIndex=0",
        "--set", "job.maxFailedIndexes=2", "--set", "job.onInconsistent=FailIndex", *SHARED_JOURNAL,
    ).job_spec()
    assert (spec["completions"], spec["parallelism"]) == (8, 3)
    assert spec["backoffLimitPerIndex"] == 0
    assert spec["maxFailedIndexes"] == 2
    assert exit_code_actions(spec)[3] == "FailIndex"
    # More parallelism than shards runs every shard at once.
    assert render("--set", "job.shards=2", "--set", "job.parallelism=9", *SHARED_JOURNAL).job_spec()["parallelism"] == 2


def test_shards_on_the_defaults_run_one_after_another_on_the_journal_claim(render):
    # The default claim is ReadWriteOnce: one node at a time may mount it, so
    # the shards take turns, and the deadline covers every turn.
    spec = render("--set", "job.shards=4").job_spec()
    assert (spec["completions"], spec["parallelism"]) == (4, 1)
    budget = 3600 + 20
    assert spec["activeDeadlineSeconds"] == 4 * budget + 300
    # Without a journal nothing is shared: every shard at once.
    spec = render("--set", "job.shards=4", "--set", "journal.enabled=false").job_spec()
    assert (spec["completions"], spec["parallelism"]) == (4, 4)
    assert spec["activeDeadlineSeconds"] == budget + 300


@pytest.mark.parametrize("parallelism, waves", [(1, 4), (2, 2), (3, 2), (4, 1)])
def test_the_sharded_deadline_covers_every_wave_of_pods(render, parallelism, waves):
    spec = render(
        "--set", "job.shards=4", "--set", f"job.parallelism={parallelism}", *SHARED_JOURNAL,
        "--set", "config.runTimeoutSecs=100", "--set", "config.rollbackTimeoutSecs=50",
        "--set", "job.activeDeadlineMarginSecs=60",
    ).job_spec()
    assert spec["parallelism"] == parallelism
    assert spec["activeDeadlineSeconds"] == waves * (100 + 50) + 60


def test_shards_at_once_on_a_one_node_claim_are_refused_with_a_clean_message(render_error):
    error = render_error("--set", "job.shards=4", "--set", "job.parallelism=2")
    assert 'job.parallelism="2"' in error
    assert '"ReadWriteOnce"' in error
    assert "journal.accessMode=ReadWriteMany" in error
    assert "%!" not in error
    error = render_error("--set", "job.shards=2", "--set", "job.maxFailedIndexes=3", *SHARED_JOURNAL)
    assert 'job.maxFailedIndexes="3" cannot exceed job.shards="2"' in error
    assert "%!" not in error


def test_shards_at_once_share_a_read_write_many_claim(render):
    # Each shard writes its own file on the shared claim: the job appends
    # .shard-<index>-of-<count> to JOURNAL_PATH.
    rendered = render("--set", "job.shards=4", *SHARED_JOURNAL)
    assert rendered.job_spec()["parallelism"] == 4
    assert rendered.one("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_bad_shard_settings_are_refused(render_error):
    assert "maxFailedIndexes" in render_error("--set", "job.shards=2", "--set", "job.maxFailedIndexes=3", *SHARED_JOURNAL)
    assert "shards" in render_error("--set", "job.shards=0")
    # FailIndex needs an Indexed Job.
    assert "onInconsistent" in render_error("--set", "job.onInconsistent=FailIndex")


def test_sharded_example_values(render):
    spec = render("-f", CHART / "ci" / "sharded-values.yaml").job_spec()
    assert (spec["completions"], spec["parallelism"], spec["maxFailedIndexes"]) == (4, 2, 1)
    assert exit_code_actions(spec)[3] == "FailIndex"


# ------------------------------------------------------------- node protocol


def test_node_protocol_is_standard_unless_set(render, render_error):
    assert render().env()["NODE_PROTOCOL"] == "standard"
    assert render("--set", "config.nodeProtocol=two-phase").env()["NODE_PROTOCOL"] == "two-phase"
    assert "nodeProtocol" in render_error("--set", "config.nodeProtocol=2pc")


# ------------------------------------------------------------- metrics


def test_metrics_are_off_by_default(render):
    env = render().env()
    assert "METRICS_PUSHGATEWAY_URL" not in env
    assert "METRICS_JOB" not in env


def test_metrics_go_to_the_pushgateway_given(render):
    env = render(
        "--set", "metrics.pushgateway.url=http://prometheus-pushgateway.monitoring.svc:9091",
        "--set", "metrics.job=nightly",
    ).env()
    assert env["METRICS_PUSHGATEWAY_URL"] == "http://prometheus-pushgateway.monitoring.svc:9091"
    assert env["METRICS_JOB"] == "nightly"
    assert render("--set", "metrics.pushgateway.url=https://gw.example/prefix").env()["METRICS_JOB"] == "api-consumer"


@pytest.mark.parametrize("url", ["http://user:secret@gw:9091", "ftp://gw", "http://gw:9091/?x=1", "gw:9091"])
def test_the_schema_refuses_a_gateway_url_with_credentials_or_not_http(render_error, url):
    error = render_error("--set", f"metrics.pushgateway.url={url}")
    assert "metrics" in error


def test_the_schema_refuses_a_metrics_job_the_gateway_cannot_take(render_error):
    assert "metrics" in render_error("--set", "metrics.job=a/b")


# ------------------------------------------------------------- extension points


def test_extra_env_volumes_and_mounts_reach_the_job_container(render):
    rendered = render(
        "--set-json", 'extraEnv=[{"name":"HTTPS_PROXY","value":"http://proxy:3128"},{"name":"LOG_LEVEL","value":"debug"}]',
        "--set-json", 'extraEnvFrom=[{"secretRef":{"name":"more-settings"}}]',
        "--set-json", 'extraVolumes=[{"name":"extra","emptyDir":{}}]',
        "--set-json", 'extraVolumeMounts=[{"name":"extra","mountPath":"/extra"}]',
    )
    container = job_container(rendered)
    env = [e["name"] for e in container["env"]]
    assert env == ["HTTPS_PROXY", "LOG_LEVEL"]
    assert container["envFrom"][1] == {"secretRef": {"name": "more-settings"}}
    assert {"name": "extra", "mountPath": "/extra"} in container["volumeMounts"]
    assert {"name": "extra", "emptyDir": {}} in rendered.job_spec()["template"]["spec"]["volumes"]


@pytest.mark.parametrize(
    "bad",
    [
        ("--set-json", 'extraEnv=[{"value":"no name"}]'),
        ("--set-json", 'extraEnv={"A":"b"}'),
        ("--set-json", 'extraVolumes=[{"emptyDir":{}}]'),
        ("--set-json", 'extraVolumeMounts=[{"name":"x","mountPath":"relative"}]'),
        ("--set-json", 'extraEnvFrom=[{}]'),
        ("--set", "image.digest=latest"),
        ("--set", "config.reportPath=relative/report.json"),
        ("--set", "config.reportPath=/reports/"),
        ("--set", "demo.networkPolicy.enabled=yes"),
        ("--set", "networkPolicy.enabled=yes"),
        ("--set", "networkPolicy.egress=true"),
        ("--set", "demo.toolsImage.digest=1.37.0"),
    ],
    ids=lambda value: " ".join(value),
)
def test_malformed_extension_points_are_refused(render_error, bad):
    assert render_error(*bad)


def test_image_by_digest(render):
    digest = "sha256:" + "a" * 64
    container = job_container(render("--set", f"image.digest={digest}"))
    assert container["image"] == f"api-consumer@{digest}"


def test_security_contexts_are_overridable_and_run_as_user_omittable(render):
    rendered = render("--set", "podSecurityContext.runAsUser=null", "--set", "podSecurityContext.runAsGroup=null", "--set", "podSecurityContext.fsGroup=null")
    pod = rendered.job_spec()["template"]["spec"]["securityContext"]
    assert "runAsUser" not in pod and "runAsGroup" not in pod and "fsGroup" not in pod
    # The rest of the restricted profile stays.
    assert pod["runAsNonRoot"] is True
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert job_container(rendered)["securityContext"]["readOnlyRootFilesystem"] is True
    # The defaults are the restricted profile with the image's user.
    pod = render().job_spec()["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (65532, 65532, 65532)


def test_report_path_lands_on_a_volume(render):
    rendered = render("--set", "config.reportPath=/var/run/api-consumer/report.json")
    assert rendered.env()["REPORT_PATH"] == "/var/run/api-consumer/report.json"
    container = job_container(rendered)
    assert {"name": "report", "mountPath": "/var/run/api-consumer"} in container["volumeMounts"]
    assert {"name": "report", "emptyDir": {}} in rendered.job_spec()["template"]["spec"]["volumes"]
    assert "REPORT_PATH" not in render().env()


def test_a_network_policy_admits_only_the_job_and_test_pods_to_the_demo_nodes(render):
    rendered = render()
    policy = rendered.named("NetworkPolicy", "api-consumer-nodes")["spec"]
    nodes = rendered.one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert all(nodes[k] == v for k, v in policy["podSelector"]["matchLabels"].items())
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    expressions = {e["key"]: e["values"] for e in peer["podSelector"]["matchExpressions"]}
    assert expressions["app.kubernetes.io/component"] == ["job", "test"]
    job_labels = rendered.job_spec()["template"]["metadata"]["labels"]
    assert job_labels["app.kubernetes.io/component"] in expressions["app.kubernetes.io/component"]
    assert job_labels["app.kubernetes.io/instance"] in expressions["app.kubernetes.io/instance"]
    assert "api-consumer-nodes" not in {p["metadata"]["name"] for p in render("--set", "demo.networkPolicy.enabled=false").kind("NetworkPolicy")}
    # Without the demo there is nothing to protect.
    assert [p["metadata"]["name"] for p in render(*REAL_NODES).kind("NetworkPolicy")] == ["api-consumer"]


def matches(selector, labels):
    """Whether a label selector (matchLabels and In expressions) selects labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(e["operator"] == "In" and labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))


@pytest.mark.parametrize("values", [(), REAL_NODES, ("--set", "cronJob.enabled=true")], ids=["demo", "real", "cron"])
def test_the_job_and_test_pods_admit_no_connection(render, values):
    rendered = render(*values)
    policy = rendered.named("NetworkPolicy", "api-consumer")["spec"]
    assert policy["policyTypes"] == ["Ingress"] and "ingress" not in policy and "egress" not in policy
    selected = [rendered.job_spec()["template"]["metadata"]["labels"]]
    selected += [p["metadata"]["labels"] for p in rendered.kind("Pod")]
    assert all(matches(policy["podSelector"], labels) for labels in selected)
    # Not the demo nodes (their own policy admits the job), nor another release.
    for sts in rendered.kind("StatefulSet"):
        assert not matches(policy["podSelector"], sts["spec"]["template"]["metadata"]["labels"])
    other = render(*values, release="other").job_spec()["template"]["metadata"]["labels"]
    assert not matches(policy["podSelector"], other)
    assert not [p for p in render(*values, "--set", "networkPolicy.enabled=false").kind("NetworkPolicy") if p["metadata"]["name"] == "api-consumer"]


def test_every_namespaced_resource_is_in_the_release_namespace(render):
    for values in ((), REAL_NODES + ("--set", "auth.token=t", "--set", "metrics.prometheusRule.enabled=true"), ("--set", "cronJob.enabled=true")):
        for doc in render(*values, namespace="batch").docs:
            assert doc["metadata"]["namespace"] == "batch", (doc["kind"], doc["metadata"]["name"])


# ------------------------------------------------------------- checkov skips


def checkov_skips(doc):
    annotations = doc["metadata"].get("annotations") or {}
    skips = {}
    for key, value in annotations.items():
        if key.startswith("checkov.io/skip"):
            # checkov splits on "=": exactly one, between the check and its reason.
            check, reason = value.split("=")
            assert re.fullmatch(r"CKV2?_K8S_\d+", check) and len(reason) > 20, value
            # podman kube play refuses longer annotation values.
            assert len(value) <= 63, value
            skips[check] = reason
    return skips


WORKLOADS = ("Job", "CronJob", "StatefulSet", "Pod")


def pod_images(doc):
    """The values keys of the images a workload's containers run."""
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    if doc["kind"] != "Pod":
        spec = spec["template"]["spec"]
    images = [c["image"] for c in spec.get("initContainers", []) + spec["containers"]]
    keys = ["image" if "api-consumer" in i else "demo.toolsImage" for i in images]
    return sorted(set(keys), key=["image", "demo.toolsImage"].index)


@pytest.mark.parametrize(
    "values",
    [(), ("--set", "job.shards=4"), ("--set", "cronJob.enabled=true"), REAL_NODES + ("--set", "auth.token=t")],
    ids=["demo", "shards", "cron", "real-with-token"],
)
def test_checkov_skips_are_annotated_with_their_reasons(render, values):
    rendered = render(*values)
    for doc in rendered.docs:
        if doc["kind"] in WORKLOADS:
            skips = checkov_skips(doc)
            # A tag and IfNotPresent on the defaults: the digest check and the
            # pull policy check are skipped, naming every image of the pod.
            images = pod_images(doc)
            assert skips["CKV_K8S_43"] == "by tag, no digest: " + ", ".join(images)
            assert skips["CKV_K8S_15"] == "pullPolicy not Always: " + ", ".join(images)
            # Probes are skipped on the test pods only; the demo nodes have them.
            assert ("CKV_K8S_8" in skips) == (doc["kind"] == "Pod")
            # Both NetworkPolicies are on by default: no CKV2_K8S_6 skip.
            assert "CKV2_K8S_6" not in skips
        else:
            assert not checkov_skips(doc), doc["kind"]
    token_in_env = [d for d in rendered.docs if "CKV_K8S_35" in checkov_skips(d)]
    assert bool(token_in_env) == ("auth.token=t" in values)


def test_checkov_skips_go_when_their_reason_does(render):
    digest = "sha256:" + "0" * 64
    pinned = render(
        *REAL_NODES, "--set", "auth.token=t", "--set", "auth.asFile=true",
        "--set", f"image.digest={digest}", "--set", "image.pullPolicy=Always",
    )
    for doc in pinned.docs:
        skips = checkov_skips(doc)
        assert not {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35", "CKV2_K8S_6"} & set(skips), (doc["kind"], skips)
    tools = render("--set", f"demo.toolsImage.digest={digest}", "--set", "demo.toolsImage.pullPolicy=Always")
    test_pod = tools.named("Pod", "api-consumer-test-groups")
    assert test_pod["spec"]["containers"][0]["image"] == f"docker.io/library/busybox@{digest}"
    assert set(checkov_skips(test_pod)) == {"CKV_K8S_8", "CKV_K8S_9"}
    # The demo's job pod runs both images (the init container is the tools
    # image): a skip stays while either is taken by tag.
    assert checkov_skips(tools.kind("Job")[0])["CKV_K8S_43"] == "by tag, no digest: image"
    job_only = render("--set", f"image.digest={digest}", "--set", "image.pullPolicy=Always")
    assert checkov_skips(job_only.kind("Job")[0])["CKV_K8S_43"] == "by tag, no digest: demo.toolsImage"
    both = render(
        "--set", f"image.digest={digest}", "--set", "image.pullPolicy=Always",
        "--set", f"demo.toolsImage.digest={digest}", "--set", "demo.toolsImage.pullPolicy=Always",
    )
    for doc in both.docs:
        assert not {"CKV_K8S_43", "CKV_K8S_15"} & set(checkov_skips(doc)), doc["kind"]
    open_pods = render("--set", "networkPolicy.enabled=false")
    assert "networkPolicy.enabled false" in checkov_skips(open_pods.kind("Job")[0])["CKV2_K8S_6"]
    open_nodes = render("--set", "demo.networkPolicy.enabled=false")
    assert "demo.networkPolicy.enabled false" in checkov_skips(open_nodes.one("StatefulSet"))["CKV2_K8S_6"]


# ------------------------------------------------------------- alert rules


def test_the_prometheus_rule_alerts_per_job_and_shard_with_its_thresholds_and_labels(render):
    assert not render().kind("PrometheusRule")
    rendered = render(
        "--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.job=nightly",
        "--set", "metrics.prometheusRule.noRecentSuccessSecs=7200",
        "--set", "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        "--set", "metrics.prometheusRule.alertLabels.team=storage", "--set", "cronJob.enabled=true",
    )
    rule = rendered.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [group] = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"ApiConsumerNoRecentSuccess", "ApiConsumerInconsistent", "ApiConsumerLastRunFailed"}
    assert alerts["ApiConsumerNoRecentSuccess"]["expr"].endswith("> 7200")
    for alert in alerts.values():
        assert 'job="nightly"' in alert["expr"]
        assert "by (job, shard)" in alert["expr"]
        assert alert["labels"] == {"severity": "warning", "team": "storage"}
    # A one-off Job's last success only ages: no "no recent success" alert.
    [one_off] = render("--set", "metrics.prometheusRule.enabled=true").one("PrometheusRule")["spec"]["groups"]
    assert {r["alert"] for r in one_off["rules"]} == {"ApiConsumerInconsistent", "ApiConsumerLastRunFailed"}


# ------------------------------------------------------------- helm test


def test_helm_test_against_real_nodes_is_a_read_only_verify_with_the_jobs_image(render):
    rendered = render(*REAL_NODES, "--set", "job.shards=2", "--set", "auth.token=t0k", "--set", "auth.asFile=true")
    pod = rendered.named("Pod", "api-consumer-test-verify")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    job = job_container(rendered)
    assert container["image"] == job["image"]
    names = [e["name"] for e in container["env"]]
    env = {e["name"]: e for e in container["env"]}
    # Nothing the job does beyond reading reaches the test pod: no envFrom of
    # the job's ConfigMap (some runtimes let envFrom override env), so no
    # operation, dry run, pruning, shard, journal, report or push setting.
    assert "envFrom" not in container
    assert env["OPERATION"]["value"] == "verify" and names[-1] == "OPERATION"
    for key in ("DRY_RUN", "PRUNE", "SHARD_COUNT", "JOURNAL_PATH", "REPORT_PATH", "METRICS_PUSHGATEWAY_URL"):
        assert key not in env
    config_map = rendered.named("ConfigMap", "api-consumer-env")["data"]
    for key in ("NODES", "GROUP_IDS_FILE", "REQUEST_TIMEOUT_MS", "NODE_PROTOCOL", "LOG_FORMAT"):
        ref = env[key]["valueFrom"]["configMapKeyRef"]
        assert ref == {"name": "api-consumer-env", "key": key} and key in config_map
    assert env["AUTH_TOKEN_FILE"]["value"].endswith("/token")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/lib/api-consumer" not in mounts
    assert pod["spec"]["volumes"] == [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" not in v and "emptyDir" not in v]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # With the demo, the demo check runs instead; and it can be turned off.
    assert not [p for p in render().kind("Pod") if p["metadata"]["name"].endswith("-test-verify")]
    assert not [p for p in render(*REAL_NODES, "--set", "verifyTest.enabled=false").kind("Pod") if p["metadata"]["name"].endswith("-test-verify")]


def test_the_verify_pod_gets_the_extension_points_but_stays_a_verify(render):
    rendered = render(
        *REAL_NODES,
        "--set-json", 'extraEnv=[{"name":"OPERATION","value":"delete"},{"name":"HTTPS_PROXY","value":"http://proxy:3128"},'
        '{"name":"METRICS_PUSHGATEWAY_URL","value":"http://gw:9091"},{"name":"TOKEN_DIR","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]',
        "--set-json", 'extraEnvFrom=[{"secretRef":{"name":"more-settings"}}]',
        "--set-json", 'extraVolumes=[{"name":"vault","emptyDir":{}}]',
        "--set-json", 'extraVolumeMounts=[{"name":"vault","mountPath":"/vault/secrets"}]',
        "--set-json", 'podLabels={"team":"storage"}',
        "--set-json", 'podAnnotations={"sidecar.istio.io/inject":"false"}',
        "--set", "serviceAccountName=batch",
        "--set-json", 'nodeSelector={"pool":"batch"}',
        "--set-json", 'tolerations=[{"key":"batch","operator":"Exists"}]',
    )
    pod = rendered.named("Pod", "api-consumer-test-verify")
    [container] = pod["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "more-settings"}}]
    env = [(e["name"], e.get("value")) for e in container["env"]]
    assert ("HTTPS_PROXY", "http://proxy:3128") in env
    assert {"name": "TOKEN_DIR", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    # The job's own variables in extraEnv stay the job's: one OPERATION, the
    # verify's, and no push.
    assert [value for name, value in env if name == "OPERATION"] == ["verify"]
    assert "METRICS_PUSHGATEWAY_URL" not in dict(env)
    # Placed, labelled and annotated as the job's pods are.
    assert pod["metadata"]["labels"]["team"] == "storage"
    assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["serviceAccountName"] == "batch"
    assert pod["spec"]["nodeSelector"] == {"pool": "batch"}
    assert pod["spec"]["tolerations"] == [{"key": "batch", "operator": "Exists"}]
    assert {"name": "vault", "mountPath": "/vault/secrets"} in container["volumeMounts"]
    assert {"name": "vault", "emptyDir": {}} in pod["spec"]["volumes"]


# ------------------------------------------------------------- subchart


def test_an_umbrella_chart_can_depend_on_this_one_with_global_and_enabled(helm, tmp_path):
    import shutil
    import subprocess

    umbrella = tmp_path / "umbrella"
    (umbrella / "charts").mkdir(parents=True)
    shutil.copytree(CHART, umbrella / "charts" / "api-consumer")
    (umbrella / "Chart.yaml").write_text(
        "apiVersion: v2\nname: umbrella\nversion: 0.1.0\n"
        "dependencies:\n  - name: api-consumer\n    version: '>=0.0.0'\n    condition: api-consumer.enabled\n"
    )
    (umbrella / "values.yaml").write_text(
        "global:\n  imageRegistry: registry.example.com\napi-consumer:\n  enabled: true\n"
    )
    result = subprocess.run([helm, "template", "u", str(umbrella)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert any(doc["kind"] == "Job" for doc in docs)
    # Turned off by the umbrella's condition: nothing of this chart.
    result = subprocess.run(
        [helm, "template", "u", str(umbrella), "--set", "api-consumer.enabled=false"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    # Unknown keys under this chart are still refused.
    result = subprocess.run(
        [helm, "template", "u", str(umbrella), "--set", "api-consumer.bogus=1"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0
    assert "bogus" in result.stderr


# ------------------------------------------------------------- CronJob


def test_cronjob_forbids_overlap_and_keeps_history(render):
    rendered = render("--set", "cronJob.enabled=true", "--set", "cronJob.timeZone=Europe/Berlin")
    assert not rendered.kind("Job")
    cron = rendered.one("CronJob")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["startingDeadlineSeconds"] == 600
    assert cron["successfulJobsHistoryLimit"] == 3
    assert cron["failedJobsHistoryLimit"] == 3
    assert cron["schedule"] == "0 3 * * *"
    assert cron["timeZone"] == "Europe/Berlin"
    assert cron["suspend"] is False


def test_cronjob_jobs_have_no_ttl_unless_set_so_the_history_limits_govern(render):
    template = render("--set", "cronJob.enabled=true").one("CronJob")["spec"]["jobTemplate"]["spec"]
    assert "ttlSecondsAfterFinished" not in template
    template = render("--set", "cronJob.enabled=true", "--set", "cronJob.ttlSecondsAfterFinished=604800").one("CronJob")["spec"]["jobTemplate"]["spec"]
    assert template["ttlSecondsAfterFinished"] == 604800
    # The one-off Job keeps its own.
    assert render().job_spec()["ttlSecondsAfterFinished"] == 86400


def test_cronjob_ttl_must_be_a_count_of_seconds(render_error):
    assert "ttlSecondsAfterFinished" in render_error("--set", "cronJob.enabled=true", "--set", "cronJob.ttlSecondsAfterFinished=-1")


def test_cronjob_without_time_zone_leaves_it_to_the_cluster(render):
    assert "timeZone" not in render("--set", "cronJob.enabled=true").one("CronJob")["spec"]


def test_cronjob_example_values(render):
    cron = render("-f", CHART / "ci" / "cronjob-values.yaml").one("CronJob")["spec"]
    assert cron["schedule"] == "30 2 * * *"
    assert cron["timeZone"] == "Europe/Berlin"
    assert cron["startingDeadlineSeconds"] == 1800
    assert cron["concurrencyPolicy"] == "Forbid"


@pytest.mark.parametrize("values", VALUES)
def test_job_and_cronjob_share_one_job_spec(render, values):
    job = render(*values, "--set", "cronJob.enabled=false").one("Job")
    cron = render(*values, "--set", "cronJob.enabled=true").one("CronJob")
    # The one difference: a scheduled Job has no TTL unless one is set, so
    # the history limits govern.
    job_ttl = job["spec"].pop("ttlSecondsAfterFinished")
    assert job_ttl >= 0
    cron_ttl = cron["spec"]["jobTemplate"]["spec"].pop("ttlSecondsAfterFinished", None)
    assert cron_ttl is None
    assert cron["spec"]["jobTemplate"]["spec"] == job["spec"]
    assert cron["spec"]["jobTemplate"]["metadata"]["labels"] == job["metadata"]["labels"]


# ------------------------------------------------------------- naming


def job_name(rendered):
    return rendered.one("Job")["metadata"]["name"]


def test_job_name_is_stable_for_the_same_configuration(render):
    first, second = job_name(render()), job_name(render("--set", "config.operation=create"))
    assert first == second
    assert re.fullmatch(r"api-consumer-[0-9a-f]{10}", first)


@pytest.mark.parametrize(
    "change",
    [
        ("--set", "config.operation=delete"),
        ("--set-json", 'config.groupIds=["demo-1","demo-2","demo-4"]'),
        ("--set", "config.maxRetries=7"),
        ("--set", "config.maxFailedGroups=3"),
        ("--set", "image.tag=0.1.1"),
        ("--set", "job.backoffLimit=4"),
        ("--set", "auth.token=s3cret"),
        ("--set", "job.runKey=again"),
    ],
    ids=lambda change: change[1].split("=")[0],
)
def test_job_name_changes_with_the_configuration(render, change):
    # Job pod templates are immutable: a changed configuration must be a new
    # Job, or `helm upgrade` fails with "field is immutable".
    assert job_name(render(*change)) != job_name(render())


def test_every_name_is_derived_from_the_release(render):
    for release in ("alpha", "team-b-nightly"):
        rendered = render(release=release, namespace="ops")
        for doc in rendered.docs:
            name = doc["metadata"]["name"]
            assert name.startswith(f"{release}-"), f"{doc['kind']}/{name}"
            assert len(name) <= 63
        for node in rendered.env()["NODES"].split(","):
            assert node.startswith(f"http://{release}-"), node
        assert "alpha" not in render(release="beta").text


def test_references_point_at_the_rendered_objects(render):
    rendered = render("--set", "auth.token=s3cret")
    pod = rendered.job_spec()["template"]["spec"]
    [container] = pod["containers"]
    rendered.named("ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    for volume in pod["volumes"]:
        if "configMap" in volume:
            rendered.named("ConfigMap", volume["configMap"]["name"])
        else:
            rendered.named("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    [token] = container["env"]
    rendered.named("Secret", token["valueFrom"]["secretKeyRef"]["name"])
    sts = rendered.one("StatefulSet")
    service = rendered.named("Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"


def test_long_release_names_are_shortened_to_valid_names(render):
    release = "a-long-release-name-for-the-nightly-sync-of-team-xyz"  # Helm's limit: 53
    rendered = render(release=release)
    job = job_name(rendered)
    assert len(job) <= 63
    assert len(render("--set", "cronJob.enabled=true", release=release).one("CronJob")["metadata"]["name"]) <= 52
    assert len(rendered.one("StatefulSet")["metadata"]["name"]) <= 52
    for doc in rendered.docs:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]["name"]


def test_a_second_release_gets_its_own_objects(render):
    first = {(d["kind"], d["metadata"]["name"]) for d in render(release="one").docs}
    second = {(d["kind"], d["metadata"]["name"]) for d in render(release="two").docs}
    assert not first & second


# ------------------------------------------------------------- labels


@pytest.mark.parametrize("values", VALUES)
def test_recommended_labels_everywhere(render, values):
    for doc in render(*values).docs:
        labels = doc["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "component", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, f"{doc['kind']}/{doc['metadata']['name']}: {key}"
        assert labels["app.kubernetes.io/instance"] == "api-consumer"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_statefulset_selector_matches_its_pods_and_only_them(render):
    rendered = render()
    sts = rendered.one("StatefulSet")
    selector = sts["spec"]["selector"]["matchLabels"]
    assert selector.items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert rendered.one("Service")["spec"]["selector"] == selector
    job_labels = rendered.job_spec()["template"]["metadata"]["labels"]
    assert not selector.items() <= job_labels.items()


# ------------------------------------------------------------- configuration


@pytest.mark.parametrize("values", VALUES)
def test_environment_holds_only_job_variables_and_no_empty_value(render, values):
    env = render(*values).env()
    assert set(env) <= JOB_VARIABLES
    for key, value in env.items():
        assert value.strip(), key
    assert {"NODES", "OPERATION", "GROUP_IDS_FILE"} <= set(env)


def test_node_health_settings_reach_the_pod(render):
    env = render().env()
    assert (env["NODE_DOWN_AFTER_FAILURES"], env["NODE_DOWN_WAIT_SECS"]) == ("5", "60")
    env = render("--set", "config.nodeDownWaitSecs=0", "--set", "config.nodeDownAfterFailures=0").env()
    assert (env["NODE_DOWN_AFTER_FAILURES"], env["NODE_DOWN_WAIT_SECS"]) == ("0", "0")


@pytest.mark.parametrize("key,value", [("nodeDownWaitSecs", "-1"), ("nodeDownWaitSecs", "86401"), ("nodeDownAfterFailures", "1001")])
def test_node_health_settings_out_of_range_are_refused(render_error, key, value):
    assert key in render_error("--set", f"config.{key}={value}")


def test_operations_dry_run_and_prune_reach_the_pod(render):
    env = render().env()
    assert (env["OPERATION"], env["DRY_RUN"], env["PRUNE"], env["PRUNE_MAX"]) == ("create", "false", "false", "100")
    assert env["PRIOR_STATE"] == "auto"
    assert render("--set", "config.priorState=read").env()["PRIOR_STATE"] == "read"
    env = render(
        "--set", "config.operation=reconcile", "--set", "config.prune=true",
        "--set", "config.pruneMax=7", "--set", "config.dryRun=true",
    ).env()
    assert (env["OPERATION"], env["DRY_RUN"], env["PRUNE"], env["PRUNE_MAX"]) == ("reconcile", "true", "true", "7")


def test_a_verify_may_check_every_listed_group_without_ids(render):
    rendered = render("--set", "config.operation=verify", "--set-json", "config.groupIds=[]")
    assert rendered.env()["OPERATION"] == "verify"
    cron = render(
        "--set", "config.operation=verify", "--set-json", "config.groupIds=[]", "--set", "cronJob.enabled=true"
    )
    assert cron.one("CronJob")["spec"]["concurrencyPolicy"] == "Forbid"


def test_failure_limit_and_progress_interval_by_default(render):
    env = render().env()
    assert env["MAX_FAILED_GROUPS"] == "0"
    assert env["PROGRESS_INTERVAL_SECS"] == "10"


@pytest.mark.parametrize("option", ["--set", "--set-json"])  # --set-json: numbers as a values file has them
@pytest.mark.parametrize(
    "limit, interval", [(0, 0), (1, 1), (25, 60), (4294967295, 86400)], ids=["off", "one", "some", "largest"]
)
def test_failure_limit_and_progress_interval_from_the_values(render, option, limit, interval):
    env = render(option, f"config.maxFailedGroups={limit}", option, f"config.progressIntervalSecs={interval}").env()
    assert env["MAX_FAILED_GROUPS"] == str(limit)
    assert env["PROGRESS_INTERVAL_SECS"] == str(interval)


def test_group_ids_are_a_mounted_file(render):
    ids = ["team-a", "team-b, with a comma", "ünïcode"]
    rendered = render("--set-json", f"config.groupIds={json.dumps(ids)}")
    env = rendered.env()
    directory, file = env["GROUP_IDS_FILE"].rsplit("/", 1)
    mount, volume = mounts_by_path(rendered)[directory]
    assert mount["readOnly"] is True
    assert file == "group-ids.txt"
    data = rendered.named("ConfigMap", volume["configMap"]["name"])["data"]
    assert data["group-ids.txt"].splitlines() == ids


def test_demo_derives_nodes_from_its_statefulset(render):
    rendered = render("--set", "demo.replicas=4", namespace="sandbox")
    nodes = rendered.env()["NODES"].split(",")
    sts = rendered.one("StatefulSet")
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    assert sts["spec"]["replicas"] == 4
    assert nodes == [f"http://{name}-{i}.{service}.sandbox.svc.cluster.local:8080" for i in range(4)]
    pod = sts["spec"]["template"]["spec"]
    [node] = pod["containers"]
    env = {e["name"]: e for e in node["env"]}
    assert env["NODE_SIM_NODES"]["value"] == "1"
    assert env["NODE_SIM_HOST"]["value"] == "0.0.0.0"
    assert env["NODE_SIM_SEED"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert node["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_demo_fault_knobs_reach_the_nodes(render):
    rendered = render("-f", CHART / "ci" / "demo-faults-values.yaml")
    [node] = rendered.one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert env["NODE_SIM_AMBIGUOUS_RATE"] == "0.05"
    assert env["NODE_SIM_TIMEOUT_RATE"] == "0.02"
    assert env["NODE_SIM_HANG_MS"] == "3000"
    assert env["NODE_SIM_RATE_LIMIT"] == "50"
    assert env["NODE_SIM_FAIL_OPS"] == "create,delete,get"
    assert rendered.one("StatefulSet")["spec"]["replicas"] == 5


def test_fault_rates_from_set_arrive_as_given(render):
    # --set turns 0.25 into a string; the schema accepts it as a rate.
    [node] = render("--set", "demo.faults.failRate=0.25").one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert {"name": "NODE_SIM_FAIL_RATE", "value": "0.25"} in node["env"]


def test_demo_job_waits_for_the_nodes_and_has_a_helm_test(render):
    rendered = render()
    pod = rendered.job_spec()["template"]["spec"]
    [init] = pod["initContainers"]
    assert "healthz" in init["command"][-1]
    [test] = rendered.kind("Pod")
    assert test["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "_sim/state" in test["spec"]["containers"][0]["command"][-1]


def test_real_nodes_need_no_demo_helpers(render):
    rendered = render(*REAL_NODES)
    assert not rendered.kind("StatefulSet") and not rendered.kind("Service")
    # The one test pod is the verify, which reads no demo state.
    [test] = rendered.kind("Pod")
    assert test["metadata"]["name"].endswith("-test-verify")
    assert "command" not in test["spec"]["containers"][0]
    assert "initContainers" not in rendered.job_spec()["template"]["spec"]
    assert rendered.env()["NODES"] == "http://n1:8080,http://n2:8080"


def test_token_from_a_chart_secret(render):
    rendered = render("--set", "auth.token=s3cret")
    secret = rendered.one("Secret")
    [env] = job_container(rendered)["env"]
    assert env["name"] == "AUTH_TOKEN"
    assert env["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "token"}
    assert "s3cret" not in json.dumps(rendered.env())


def test_token_from_an_existing_secret(render):
    rendered = render("--set", "auth.existingSecret=node-token", "--set", "auth.existingSecretKey=bearer")
    assert not rendered.kind("Secret")
    [env] = job_container(rendered)["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "node-token", "key": "bearer"}


def test_no_token_no_authorization(render):
    rendered = render()
    assert not rendered.kind("Secret")
    assert "env" not in job_container(rendered)


def mounts_by_path(rendered):
    pod = rendered.job_spec()["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    return {mount["mountPath"]: (mount, volumes[mount["name"]]) for mount in pod["containers"][0]["volumeMounts"]}


def test_journal_lives_on_a_claim_that_every_run_shares(render):
    rendered = render()
    env = rendered.env()
    directory, file = env["JOURNAL_PATH"].rsplit("/", 1)
    mount, volume = mounts_by_path(rendered)[directory]
    assert not mount.get("readOnly")
    claim = rendered.one("PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "64Mi"
    assert "storageClassName" not in claim["spec"]
    # The claim's name does not follow the Job's: a new Job finds the journal.
    changed = render("--set", "config.operation=delete")
    assert changed.one("PersistentVolumeClaim")["metadata"]["name"] == claim["metadata"]["name"]
    assert job_name(changed) != job_name(rendered)
    # The pod's user can write to the volume.
    assert rendered.job_spec()["template"]["spec"]["securityContext"]["fsGroup"] == 65532


def test_journal_on_an_existing_claim_or_none(render):
    existing = render("--set", "journal.existingClaim=my-journal")
    assert not existing.kind("PersistentVolumeClaim")
    _, volume = mounts_by_path(existing)["/var/lib/api-consumer"]
    assert volume["persistentVolumeClaim"]["claimName"] == "my-journal"
    off = render("--set", "journal.enabled=false")
    assert not off.kind("PersistentVolumeClaim")
    assert "JOURNAL_PATH" not in off.env()
    assert "/var/lib/api-consumer" not in mounts_by_path(off)


def test_private_ca_from_the_values(render):
    rendered = render("--set-string", f"tls.caCert={PEM}")
    env = rendered.env()
    directory, file = env["CA_CERT_PATH"].rsplit("/", 1)
    mount, volume = mounts_by_path(rendered)[directory]
    assert mount["readOnly"] is True
    [item] = volume["configMap"]["items"]
    assert item["path"] == file
    ca = rendered.named("ConfigMap", volume["configMap"]["name"])
    assert ca["data"][item["key"]] == PEM


@pytest.mark.parametrize("source", [("--set", "auth.token=tok-123"), ("--set", "auth.existingSecret=vault-token", "--set", "auth.existingSecretKey=bearer")])
def test_the_token_can_be_a_mounted_file_instead_of_a_variable(render, source):
    rendered = render(*source, "--set", "auth.asFile=true")
    container = job_container(rendered)
    env = {e["name"]: e for e in container.get("env", [])}
    assert "AUTH_TOKEN" not in env
    path = env["AUTH_TOKEN_FILE"]["value"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["auth"]["readOnly"] is True
    assert path == mounts["auth"]["mountPath"] + "/token"
    pod = rendered.job_spec()["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "auth"]
    key = "bearer" if "auth.existingSecretKey=bearer" in source else "token"
    assert volume["secret"]["items"] == [{"key": key, "path": "token"}]
    assert volume["secret"]["secretName"] == ("vault-token" if key == "bearer" else rendered.one("Secret")["metadata"]["name"])
    # By default the token stays a variable from the Secret.
    container = job_container(render(*source))
    assert {e["name"] for e in container["env"]} == {"AUTH_TOKEN"}
    assert "auth" not in {m["name"] for m in container["volumeMounts"]}


def test_as_file_without_a_token_mounts_nothing(render):
    container = job_container(render("--set", "auth.asFile=true"))
    assert "env" not in container or not container["env"]
    assert "auth" not in {m["name"] for m in container["volumeMounts"]}


def test_private_ca_from_an_existing_config_map(render):
    rendered = render("--set", "tls.existingConfigMap=internal-ca", "--set", "tls.existingConfigMapKey=bundle.pem")
    _, volume = mounts_by_path(rendered)[rendered.env()["CA_CERT_PATH"].rsplit("/", 1)[0]]
    assert volume["configMap"] == {"name": "internal-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}
    assert len(rendered.kind("ConfigMap")) == 2


def test_no_ca_no_variable(render):
    assert "CA_CERT_PATH" not in render().env()


def test_image_tag_defaults_to_the_app_version(render):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert job_container(render())["image"] == f"api-consumer:{chart['appVersion']}"
    assert job_container(render("--set", "image.tag=1.2.3"))["image"] == "api-consumer:1.2.3"


def test_versions_agree_across_crate_chart_and_image():
    cargo = re.search(r'^version = "(.+)"$', (ROOT / "Cargo.toml").read_text(), re.MULTILINE).group(1)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    dockerfile = re.search(r"^ARG VERSION=(.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
    assert chart["appVersion"] == cargo == dockerfile


# ------------------------------------------------------------- values and schema


@pytest.mark.parametrize(
    "bad, complaint",
    [
        (("--set", "unknown=1"), "additional properties"),
        (("--set", "config.unknown=1"), "additional properties"),
        (("--set", "demo.faults.unknown=1"), "additional properties"),
        (("--set", "config.maxRetries=many"), "want integer"),
        (("--set", "cronJob.enabled=yes"), "want boolean"),
        (("--set", "config.operation=upsert"), "value must be one of"),
        (("--set", "config.logFormat=xml"), "value must be one of"),
        (("--set", "image.pullPolicy=Sometimes"), "value must be one of"),
        (("--set", "job.onInconsistent=Ignore"), "value must be one of"),
        (("--set-json", 'demo.faults.failOps=["post"]'), "value must be one of"),
        (("--set", "config.concurrency=0"), "minimum"),
        (("--set", "config.maxFailedGroups=-1"), "minimum"),
        (("--set", "config.maxFailedGroups=4294967296"), "maximum"),
        (("--set-json", "config.maxFailedGroups=2.5"), "want integer"),
        (("--set", "config.maxFailedGroups=all"), "want integer"),
        (("--set-string", "config.maxFailedGroups=5"), "want integer"),
        (("--set", "config.progressIntervalSecs=-1"), "minimum"),
        (("--set", "config.progressIntervalSecs=86401"), "maximum"),
        (("--set-json", "config.progressIntervalSecs=0.5"), "want integer"),
        (("--set", "config.progressIntervalSecs=10s"), "want integer"),
        (("--set-json", "demo.faults.failRate=1.5"), "maximum"),
        (("--set", "demo.faults.failRate=1.5"), "does not match pattern"),
        (("--set", "config.logLevel="), "minLength"),
        (("--set", "tls.caCert=not-a-pem"), "tls/caCert"),
        (("--set", "journal.accessMode=ReadOnlyMany"), "value must be one of"),
        (("--set", "journal.size=lots"), "does not match pattern"),
        (("--set-json", "config.groupIds=[]"), "minItems"),
        (("--set-json", "config.groupIds=[]", "--set", "config.operation=reconcile"), "minItems"),
        (("--set", "config.prune=true"), "value must be 'reconcile'"),
        (("--set", "config.prune=yes"), "want boolean"),
        (("--set", "config.dryRun=1"), "want boolean"),
        (("--set", "config.pruneMax=-1"), "minimum"),
        (("--set", "config.priorState=lists"), "value must be one of"),
        (("--set", "config.pruneMax=4294967296"), "maximum"),
        (("--set-json", 'config.groupIds=["# not an id"]'), "does not match pattern"),
        (("--set-json", 'config.groupIds=[" padded"]'), "does not match pattern"),
        (("--set-json", 'config.groupIds=["tab\\there"]'), "does not match pattern"),
        (("--set-json", 'config.nodes=["a,b"]', "--set", "demo.enabled=false"), "does not match pattern"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
)
def test_the_schema_rejects_bad_values(render_error, bad, complaint):
    assert complaint in render_error(*bad)


@pytest.mark.parametrize(
    "bad, complaint",
    [
        (("--set-json", 'config.nodes=["http://n1"]'), "config.nodes and demo.enabled are exclusive"),
        (("--set", "demo.enabled=false"), "config.nodes is empty"),
        (("--set", "auth.token=t", "--set", "auth.existingSecret=s"), "are exclusive"),
        (("--set-string", f"tls.caCert={PEM}", "--set", "tls.existingConfigMap=ca"), "are exclusive"),
        (("--set", "config.retryBaseDelayMs=500", "--set", "config.retryMaxDelayMs=100"), "at least config.retryBaseDelayMs"),
        (("--set-json", 'config.groupIds=[".."]'), "cannot be addressed"),
        (("--set-json", f'config.groupIds=["{"é" * 130}"]'), "longer than 256 bytes"),
    ],
    ids=["nodes-and-demo", "no-nodes", "two-tokens", "two-cas", "retry-delays", "dot-dot", "long-id"],
)
def test_inconsistent_values_fail_with_a_clear_message(render_error, bad, complaint):
    assert complaint in render_error(*bad)


def schema_keys(schema, path=""):
    """Every value path the schema describes, down to the chart's own objects."""
    keys = set()
    for key, sub in schema.get("properties", {}).items():
        keys.add(path + key)
        if sub.get("type") == "object" and "properties" in sub and key != "resources":
            assert sub.get("additionalProperties") is False, f"{path + key} accepts unknown keys"
            keys |= schema_keys(sub, f"{path}{key}.")
    return keys


def values_keys(values, path=""):
    keys = set()
    for key, value in values.items():
        keys.add(path + key)
        # Objects of Kubernetes' own shapes, which the schema leaves open.
        if isinstance(value, dict) and value and key not in ("resources", "podSecurityContext", "containerSecurityContext", "reportVolume", "alertLabels"):
            keys |= values_keys(value, f"{path}{key}.")
    return keys


def test_schema_covers_every_value_and_rejects_unknown_keys():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    # An umbrella chart's `global` and `enabled` are accepted, and not values
    # of this chart's own.
    assert {"global", "enabled"} <= set(schema["properties"])
    assert schema_keys(schema) - {"global", "enabled"} == values_keys(values)


def test_every_value_is_commented():
    lines = (CHART / "values.yaml").read_text().splitlines()
    uncommented = []
    inside_resources = None
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        if inside_resources is not None and indent > inside_resources:
            continue  # Kubernetes' own fields (resources, security contexts, a volume)
        kubernetes_shaped = ("resources", "podSecurityContext", "containerSecurityContext", "reportVolume")
        inside_resources = indent if key in kubernetes_shaped else None
        previous = lines[number - 1].strip() if number else ""
        if not previous.startswith("#"):
            uncommented.append(key)
    assert not uncommented


# ------------------------------------------------------------- docs


@pytest.mark.parametrize("values", VALUES)
def test_notes_name_what_was_installed(render, notes, values):
    text = notes(*values)
    assert "<no value>" not in text
    rendered = render(*values)
    if rendered.kind("Job"):
        name = job_name(rendered)
        if rendered.job_spec().get("completionMode") == "Indexed":
            # One pod per shard: logs by the Job's label, each with its pod.
            assert f"kubectl logs -n default -l batch.kubernetes.io/job-name={name} --prefix" in text
            assert "split over 4 shards" in text
        else:
            assert f"kubectl logs -n default job/{name}" in text
        assert f"batch.kubernetes.io/job-name={name}" in text
        assert "state.terminated.message" in text
    else:
        cron = rendered.one("CronJob")["metadata"]["name"]
        assert f"--from=cronjob/{cron}" in text
    # helm test: the demo check, or the verify against real nodes.
    assert "helm test api-consumer" in text
    if rendered.kind("StatefulSet"):
        assert f"pod/{rendered.one('StatefulSet')['metadata']['name']}-0" in text
    else:
        assert "Once the job is complete" in text


def test_notes_offer_the_verify_test_against_real_nodes(notes):
    real = " ".join(notes("--set", "demo.enabled=false", "--set-json", 'config.nodes=["http://n1:8080"]').split())
    assert "Once the job is complete, check that every group is on every node or on none" in real
    assert "helm test api-consumer -n default --logs" in real
    off = notes("--set", "demo.enabled=false", "--set-json", 'config.nodes=["http://n1:8080"]', "--set", "verifyTest.enabled=false")
    assert "helm test" not in off
    assert "Once the job is complete" not in notes()


def test_notes_say_what_the_termination_message_holds(notes):
    text = " ".join(notes().split())
    assert "Every run that finishes leaves its compact JSON summary as the termination message" in text
    assert "a pod that stopped before writing it (exit 2, or killed) shows the end of its log" in text
    assert "state.terminated.message" in text
    # Not only failed pods have one any more.
    assert "a pod that failed shows" not in text


@pytest.mark.parametrize("cron", ["false", "true"], ids=["job", "cronjob"])
def test_notes_mention_the_progress_lines_as_configured(notes, cron):
    assert "a progress line every 10s;" in notes("--set", f"cronJob.enabled={cron}")
    assert "a progress line every 45s;" in notes("--set", f"cronJob.enabled={cron}", "--set", "config.progressIntervalSecs=45")
    assert "progress line" not in notes("--set", f"cronJob.enabled={cron}", "--set", "config.progressIntervalSecs=0")


def readme_section():
    # The deployment guide, manifests/README.md: every command in it (the
    # walkthrough, the CronJob, sharding) must match the chart.
    return (CHART / "README.md").read_text()


def test_readme_walkthrough_matches_the_chart(render):
    section = readme_section()
    rendered = render()
    # The names the walkthrough uses exist in the rendering for its release.
    assert "helm upgrade --install api-consumer manifests/" in section
    sts = rendered.one("StatefulSet")["metadata"]["name"]
    assert f"{sts}-0" in section
    cron = render("--set", "cronJob.enabled=true").one("CronJob")["metadata"]["name"]
    assert f"cronjob/{cron}" in section
    # Every label selector matches something the chart labels that way.
    for selector in re.findall(r"-l ([^\s']+)", section):
        pairs = dict(pair.split("=", 1) for pair in selector.split(","))
        pairs = {key: value for key, value in pairs.items() if key.startswith("app.kubernetes.io/")}
        if not pairs:
            continue
        release = pairs.get("app.kubernetes.io/instance", "api-consumer")
        labelled = [doc["metadata"]["labels"] for doc in render(release=release).docs]
        labelled += [spec["template"]["metadata"]["labels"] for spec in [render(release=release).job_spec()]]
        assert any(pairs.items() <= labels.items() for labels in labelled), selector
    # Every --set and -f in the walkthrough is accepted by the chart.
    for path in re.findall(r"-f (manifests/ci/[\w.-]+\.yaml)", section):
        assert (ROOT / path).is_file(), path
    for key in re.findall(r"--set(?:-string|-json)? '?([\w.]+)=", section):
        node = yaml.safe_load((CHART / "values.yaml").read_text())
        for part in key.split("."):
            if node == {}:
                break  # a free-form map (labels, annotations): any key
            assert part in node, key
            node = node[part]
    # The image name the walkthrough builds and loads is the one the chart runs.
    image = job_container(rendered)["image"]
    assert f"docker build -t {image} .\nminikube image load {image}\n" in section
    assert f"minikube image build -t {image} ." in section


def test_the_monitoring_walkthrough_fits_together():
    section = readme_section()
    # The Pushgateway's release and namespace, as the guide installs it...
    [(release, namespace)] = re.findall(
        r"helm upgrade --install (\S+) prometheus-community/prometheus-pushgateway --namespace (\S+) --create-namespace", section
    )
    # ...are what the job pushes to and what the port-forward reaches...
    urls = set(re.findall(r"metrics\.pushgateway\.url=(\S+)", section))
    assert urls == {f"http://{release}.{namespace}.svc:9091"}
    assert f"kubectl --namespace {namespace} port-forward svc/{release} 9091:9091 &" in section
    # ...and what the ServiceMonitor selects, with honorLabels.
    path = re.search(r"kubectl apply -f (docs/examples/\S+\.yaml)", section).group(1)
    monitor = yaml.safe_load((ROOT / path).read_text())
    assert monitor["kind"] == "ServiceMonitor" and monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == namespace
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [namespace]}
    # The labels the prometheus-pushgateway chart puts on its Service, port "http".
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prometheus-pushgateway",
        "app.kubernetes.io/instance": release,
    }
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "honorLabels": True}
    # The stack's Prometheus selects it, and the chart's rule, by the same label.
    stack = monitor["metadata"]["labels"]["release"]
    assert f"metrics.prometheusRule.labels.release={stack}" in section
    # The metric the guide greps for is one the job pushes, under its job label.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert f'api_consumer_exit_code{{instance="",job="{values["metrics"]["job"]}"}} 0' in section
    assert "`api_consumer_exit_code`" in (ROOT / "docs" / "METRICS.md").read_text()


def test_the_cronjob_example_needs_only_what_the_guide_creates():
    section = readme_section()
    cron = yaml.safe_load((CHART / "ci" / "cronjob-values.yaml").read_text())
    secret, key = cron["auth"]["existingSecret"], cron["auth"]["existingSecretKey"]
    assert f"kubectl create secret generic {secret} --from-literal={key}=" in section
    config_map, ca_key = cron["tls"]["existingConfigMap"], cron["tls"]["existingConfigMapKey"]
    assert f"kubectl create configmap {config_map} --from-file={ca_key}=" in section
    assert "cp manifests/ci/cronjob-values.yaml my-cron-values.yaml" in section


def test_ci_builds_the_binaries_as_the_dockerfile_does():
    # CI cannot pull the Rust image, so it runs the builder stage's commands on
    # the host; they must stay the same commands.
    dockerfile = (ROOT / "Dockerfile").read_text()
    script = (ROOT / "ci" / "chart-and-image.sh").read_text()
    for needle in (
        "-C target-feature=+crt-static",
        "CARGO_PROFILE_RELEASE_STRIP=symbols",
        'cargo build --release --locked --target "$target" --bins',
        "rustc -vV | sed -n 's/^host: //p'",
        "ci/image-rootfs.sh",
    ):
        assert needle in dockerfile, needle
        assert needle in script, needle
    assert "COPY --from=builder /rootfs/ /" in dockerfile
    assert "--build-context builder=" in script
