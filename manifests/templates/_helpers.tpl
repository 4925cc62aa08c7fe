{{/*
Names. Kubernetes names are DNS labels of at most 63 characters; the shorter
limits below leave room for the suffixes the controllers add.
*/}}

{{- define "api-consumer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: the release name, plus the chart name unless
the release name already contains it.
*/}}
{{- define "api-consumer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The one-off Job: <fullname>-<hash>, where the hash covers the Job's whole spec
(including the checksum of its configuration) and job.runKey. A Job's pod
template is immutable, so an upgrade that changes anything must create a new
Job rather than patch the old one; Helm then deletes the old Job. An upgrade
that changes nothing keeps the finished Job instead of running it again.
52 + 1 + 10 characters: the Job controller puts the name in a 63-character
label of its pods.
*/}}
{{- define "api-consumer.jobName" -}}
{{- $hash := print (include "api-consumer.jobSpec" .) .Values.job.runKey | sha256sum | trunc 10 }}
{{- printf "%s-%s" (include "api-consumer.fullname" . | trunc 52 | trimSuffix "-") $hash }}
{{- end }}

{{/*
The CronJob: at most 52 characters, since its Jobs get an 11-character suffix.
*/}}
{{- define "api-consumer.cronJobName" -}}
{{- include "api-consumer.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
The demo nodes' StatefulSet and headless Service; pods add "-<ordinal>" and the
StatefulSet's revision label adds a hash.
*/}}
{{- define "api-consumer.nodesName" -}}
{{- printf "%s-nodes" (include "api-consumer.fullname" . | trunc 46 | trimSuffix "-") }}
{{- end }}

{{- define "api-consumer.envConfigMapName" -}}
{{- printf "%s-env" (include "api-consumer.fullname" . | trunc 59 | trimSuffix "-") }}
{{- end }}

{{- define "api-consumer.groupIdsConfigMapName" -}}
{{- printf "%s-group-ids" (include "api-consumer.fullname" . | trunc 53 | trimSuffix "-") }}
{{- end }}

{{/*
The Secret holding AUTH_TOKEN: the existing one, or the chart's own.
*/}}
{{- define "api-consumer.authSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- printf "%s-auth" (include "api-consumer.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{- define "api-consumer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels: the Kubernetes recommended app.kubernetes.io/* set. Each resource adds
app.kubernetes.io/component (job, demo-node, test).
*/}}
{{- define "api-consumer.labels" -}}
helm.sh/chart: {{ include "api-consumer.chart" . }}
{{ include "api-consumer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "api-consumer.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "api-consumer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "api-consumer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "api-consumer.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "api-consumer.toolsImage" -}}
{{- if .Values.demo.toolsImage.digest }}
{{- printf "%s@%s" .Values.demo.toolsImage.repository .Values.demo.toolsImage.digest }}
{{- else }}
{{- printf "%s:%s" .Values.demo.toolsImage.repository .Values.demo.toolsImage.tag }}
{{- end }}
{{- end }}

{{/*
checkov's skip annotations (checkov.io/skip<n>: <check>=<reason>) on a
workload, for the checks that do not apply to it as configured. A skip is
rendered only while the setting that makes its check not apply is in force:
with image.digest set (and demo.toolsImage.digest, for a pod that also runs
the demo's init container), CKV_K8S_43 runs on the workload and passes. Each
value stays within 63 characters, which `podman kube play` requires of
annotations, so the reasons are short; in full:

- CKV_K8S_43 (images by digest): the operator builds or loads the image, so
  the chart cannot know its digest; image.digest and demo.toolsImage.digest
  set it. The reason names the images still taken by tag.
- CKV_K8S_15 (pullPolicy Always): IfNotPresent is what runs an image loaded
  into the cluster (minikube image load) without a registry; a digest pins
  what runs either way. The reason names the images not pulled Always.
- CKV_K8S_8, CKV_K8S_9 (probes) on the helm test pods: they run once and exit.
- CKV2_K8S_6 (a NetworkPolicy) only when networkPolicy.enabled (job and test
  pods) or demo.networkPolicy.enabled (demo nodes) is turned off.
- CKV_K8S_35 (a Secret as a file) only while auth.asFile is false.

Called with (dict "ctx" $ "kind" "job"|"test"|"node" "images" (list ...)):
"images" names the values keys of the images the pod runs; a job pod's are
derived (the job's image, and the tools image of the demo's init container).
*/}}
{{- define "api-consumer.checkovSkips" -}}
{{- $v := .ctx.Values }}
{{- $byTag := list }}
{{- $notAlways := list }}
{{- $images := .images | default (ternary (list "image" "demo.toolsImage") (list "image") $v.demo.enabled) }}
{{- range $images }}
{{- $image := ternary $v.demo.toolsImage $v.image (eq . "demo.toolsImage") }}
{{- if not $image.digest }}
{{- $byTag = append $byTag . }}
{{- end }}
{{- if ne $image.pullPolicy "Always" }}
{{- $notAlways = append $notAlways . }}
{{- end }}
{{- end }}
{{- $skips := list }}
{{- with $byTag }}
{{- $skips = append $skips (printf "CKV_K8S_43=by tag, no digest: %s" (join ", " .)) }}
{{- end }}
{{- with $notAlways }}
{{- $skips = append $skips (printf "CKV_K8S_15=pullPolicy not Always: %s" (join ", " .)) }}
{{- end }}
{{- if eq .kind "test" }}
{{- $skips = append $skips "CKV_K8S_8=a helm test pod runs once: no liveness to probe" }}
{{- $skips = append $skips "CKV_K8S_9=a helm test pod serves nothing: no readiness probe" }}
{{- end }}
{{- if and (ne .kind "node") (not $v.networkPolicy.enabled) }}
{{- $skips = append $skips "CKV2_K8S_6=networkPolicy.enabled false; the pod has no port" }}
{{- end }}
{{- if and (eq .kind "node") (not $v.demo.networkPolicy.enabled) }}
{{- $skips = append $skips "CKV2_K8S_6=demo.networkPolicy.enabled false (demo nodes only)" }}
{{- end }}
{{- if and (has "image" $images) (ne .kind "node") (or $v.auth.token $v.auth.existingSecret) (not $v.auth.asFile) }}
{{- $skips = append $skips "CKV_K8S_35=auth.asFile false: the token is in AUTH_TOKEN" }}
{{- end }}
{{- range $i, $skip := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end }}

{{/*
NODES: config.nodes, or the demo StatefulSet's pods by their stable DNS names.
*/}}
{{- define "api-consumer.nodes" -}}
{{- if .Values.demo.enabled }}
{{- $name := include "api-consumer.nodesName" . }}
{{- $nodes := list }}
{{- range $i := until (int .Values.demo.replicas) }}
{{- $nodes = append $nodes (printf "http://%s-%d.%s.%s.svc.%s:%d" $name $i $name $.Release.Namespace $.Values.demo.clusterDomain (int $.Values.demo.port)) }}
{{- end }}
{{- join "," $nodes }}
{{- else }}
{{- join "," .Values.config.nodes }}
{{- end }}
{{- end }}

{{/*
Where the job's pod mounts its files: the ids and the CA (read-only
ConfigMaps), the journal (the claim).
*/}}
{{- define "api-consumer.groupIdsDir" -}}/etc/api-consumer/ids{{- end }}
{{- define "api-consumer.caDir" -}}/etc/api-consumer/tls{{- end }}
{{- define "api-consumer.journalDir" -}}/var/lib/api-consumer{{- end }}

{{/*
The file the kubelet creates and mounts for the job container's termination
message: both its terminationMessagePath and TERMINATION_MESSAGE_PATH, where the
job writes its summary, so that the two cannot differ.
*/}}
{{- define "api-consumer.terminationMessagePath" -}}/dev/termination-log{{- end }}

{{/*
The ConfigMap holding CA_CERT_PATH's PEM, and its key; empty without one.
*/}}
{{- define "api-consumer.caConfigMapName" -}}
{{- if .Values.tls.existingConfigMap }}
{{- .Values.tls.existingConfigMap }}
{{- else if .Values.tls.caCert }}
{{- printf "%s-ca" (include "api-consumer.fullname" . | trunc 60 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{- define "api-consumer.caConfigMapKey" -}}
{{- .Values.tls.existingConfigMap | empty | ternary "ca.crt" .Values.tls.existingConfigMapKey }}
{{- end }}

{{/*
The token's key in its Secret, and whether (and where) it is mounted as the
file AUTH_TOKEN_FILE instead of the variable AUTH_TOKEN.
*/}}
{{- define "api-consumer.authSecretKey" -}}
{{- .Values.auth.existingSecret | empty | ternary "token" .Values.auth.existingSecretKey }}
{{- end }}

{{- define "api-consumer.authFile" -}}
{{- if and .Values.auth.asFile (or .Values.auth.token .Values.auth.existingSecret) }}true{{ end }}
{{- end }}

{{- define "api-consumer.authDir" -}}
/var/run/secrets/api-consumer/auth
{{- end }}

{{/*
The journal's claim: the existing one, or the chart's own.
*/}}
{{- define "api-consumer.journalClaimName" -}}
{{- .Values.journal.existingClaim | default (printf "%s-journal" (include "api-consumer.fullname" . | trunc 55 | trimSuffix "-")) }}
{{- end }}

{{/*
Deadlines derived from the job's own budgets, so they cannot disagree:
Kubernetes stops the Job only after the job's run deadline and rollback budget
have passed, and kills a terminating pod only after its rollback budget.
*/}}
{{- define "api-consumer.activeDeadlineSeconds" -}}
{{- $budget := add .Values.config.runTimeoutSecs .Values.config.rollbackTimeoutSecs -}}
{{- add (mul $budget (include "api-consumer.waves" . | int)) .Values.job.activeDeadlineMarginSecs }}
{{- end }}

{{/*
How many pods of the Job run one after another: 1, or with shards,
ceil(shards / parallelism). The deadline covers every wave's budget.
*/}}
{{- define "api-consumer.waves" -}}
{{- $shards := int .Values.job.shards -}}
{{- if gt $shards 1 -}}
{{- $parallelism := int (include "api-consumer.parallelism" .) -}}
{{- div (add $shards (sub $parallelism 1)) $parallelism -}}
{{- else -}}
1
{{- end -}}
{{- end }}

{{/*
Whether the shards' pods share a journal claim that only one node may mount
at a time: the chart's own claim, not ReadWriteMany.
*/}}
{{- define "api-consumer.journalOnOneNode" -}}
{{- if and .Values.journal.enabled (not .Values.journal.existingClaim) (ne .Values.journal.accessMode "ReadWriteMany") -}}
true
{{- end -}}
{{- end }}

{{- define "api-consumer.terminationGracePeriodSeconds" -}}
{{- add .Values.config.rollbackTimeoutSecs .Values.job.terminationGraceMarginSecs }}
{{- end }}

{{/*
The restricted Pod Security profile, for every pod of the chart. The image's
user is 65532; the job writes only to what is mounted for it (the journal's
claim, and the termination-message file that the kubelet creates writable for
any user), so the root filesystem is read-only.
*/}}
{{- define "api-consumer.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "api-consumer.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/*
Checks across values that the schema cannot express.
*/}}
{{- define "api-consumer.validate" -}}
{{- if and .Values.demo.enabled .Values.config.nodes }}
{{- fail "config.nodes and demo.enabled are exclusive: the demo derives NODES from its own nodes. Set demo.enabled=false to use config.nodes." }}
{{- end }}
{{- if and (not .Values.demo.enabled) (not .Values.config.nodes) }}
{{- fail "config.nodes is empty: list the nodes' base URLs, or set demo.enabled=true for the demo cluster." }}
{{- end }}
{{- if and .Values.tls.caCert .Values.tls.existingConfigMap }}
{{- fail "tls.caCert and tls.existingConfigMap are exclusive: give the PEM or the ConfigMap that holds it." }}
{{- end }}
{{- if and .Values.auth.token .Values.auth.existingSecret }}
{{- fail "auth.token and auth.existingSecret are exclusive: give the token or the Secret that holds it." }}
{{- end }}
{{- range .Values.config.groupIds }}
{{- if has . (list "." "..") }}
{{- fail (printf "config.groupIds: the id %q cannot be addressed in a URL path (a path segment . or .. is resolved away)." .) }}
{{- end }}
{{- if gt (len .) 256 }}
{{- fail (printf "config.groupIds: the id %q is longer than 256 bytes." .) }}
{{- end }}
{{- end }}
{{- if lt (int .Values.config.retryMaxDelayMs) (int .Values.config.retryBaseDelayMs) }}
{{- fail "config.retryMaxDelayMs must be at least config.retryBaseDelayMs." }}
{{- end }}
{{- if and (gt (int .Values.job.shards) 1) (include "api-consumer.journalOnOneNode" .) (gt (int .Values.job.parallelism) 1) }}
{{- fail (printf "job.parallelism=%q runs that many shards at once, and each pod mounts the journal's claim, which is %q (one node at a time): set journal.accessMode=ReadWriteMany (a storage class that offers it), or leave job.parallelism at 0 (one shard after another), or set journal.enabled=false." (toString .Values.job.parallelism) .Values.journal.accessMode) }}
{{- end }}
{{- if gt (int .Values.job.maxFailedIndexes) (int .Values.job.shards) }}
{{- fail (printf "job.maxFailedIndexes=%q cannot exceed job.shards=%q." (toString .Values.job.maxFailedIndexes) (toString .Values.job.shards)) }}
{{- end }}
{{- end }}

{{/*
Pods of a sharded Job that run at once: job.parallelism (at most every
shard); 0 means every shard, except with a journal claim that one node at a
time may mount, where the shards run one after another.
*/}}
{{- define "api-consumer.parallelism" -}}
{{- $shards := int .Values.job.shards -}}
{{- $parallelism := int .Values.job.parallelism -}}
{{- if and (eq $parallelism 0) (include "api-consumer.journalOnOneNode" .) }}1
{{- else if or (eq $parallelism 0) (gt $parallelism $shards) }}{{ $shards }}
{{- else }}{{ $parallelism }}{{ end -}}
{{- end }}

{{/*
The Job spec, shared by the one-off Job and the CronJob's jobTemplate: one
definition, so the two cannot drift apart.
*/}}
{{- define "api-consumer.jobSpec" -}}
{{- $sharded := gt (int .Values.job.shards) 1 -}}
{{- if $sharded }}
# One pod per shard of the id list (SHARD_COUNT); Kubernetes gives each its
# index in JOB_COMPLETION_INDEX, and retries each index on its own.
completionMode: Indexed
completions: {{ .Values.job.shards | int64 }}
parallelism: {{ include "api-consumer.parallelism" . }}
backoffLimitPerIndex: {{ .Values.job.backoffLimitPerIndex | int64 }}
{{- if ge (int .Values.job.maxFailedIndexes) 0 }}
maxFailedIndexes: {{ .Values.job.maxFailedIndexes | int64 }}
{{- end }}
{{- else }}
backoffLimit: {{ .Values.job.backoffLimit | int64 }}
{{- end }}
activeDeadlineSeconds: {{ include "api-consumer.activeDeadlineSeconds" . }}
{{- if .Values.cronJob.enabled }}
{{- with .Values.cronJob.ttlSecondsAfterFinished }}
ttlSecondsAfterFinished: {{ . | int64 }}
{{- end }}
{{- else }}
ttlSecondsAfterFinished: {{ .Values.job.ttlSecondsAfterFinished | int64 }}
{{- end }}
# A replacement pod starts only once the failed one has stopped, so two runs
# never write the same groups at the same time (the only value allowed with a
# podFailurePolicy, stated for the reader).
podReplacementPolicy: Failed
# Exit codes of api-consumer: 0 done, 1 rolled back or not started, 2
# configuration error, 3 inconsistent, 4 a dry run found changes to make.
# The first matching rule applies.
podFailurePolicy:
  rules:
    # Evicted, preempted or drained: the cluster's doing, not the job's; the
    # pod rolled back on SIGTERM and is replaced without counting.
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
    # Nothing was sent and a rerun would fail the same way{{ if $sharded }} (this index;
    # the others run on){{ end }}.
    - action: {{ $sharded | ternary "FailIndex" "FailJob" }}
      onExitCodes:
        containerName: api-consumer
        operator: In
        values: [2]
    - action: {{ .Values.job.onRolledBack }}
      onExitCodes:
        containerName: api-consumer
        operator: In
        values: [1]
    - action: {{ .Values.job.onInconsistent }}
      onExitCodes:
        containerName: api-consumer
        operator: In
        values: [3]
    # A dry run's plan with changes: the answer, not a failure to retry (a
    # rerun reads the same nodes and finds the same changes). The Job fails
    # at once, so the plan shows in `kubectl get jobs` and in alerts on
    # failed Jobs; its logs and termination message hold the plan.{{ if $sharded }}
    # Sharded, only this index stops: the other shards still make their plans.{{ end }}
    - action: {{ $sharded | ternary "FailIndex" "FailJob" }}
      onExitCodes:
        containerName: api-consumer
        operator: In
        values: [4]
template:
  metadata:
    labels:
      {{- include "api-consumer.labels" . | nindent 6 }}
      app.kubernetes.io/component: job
      {{- with .Values.podLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    annotations:
      # kubectl logs shows the job's logs, not the init container's.
      kubectl.kubernetes.io/default-container: api-consumer
      # Makes a configuration change visible in the pod template (and so in
      # the Job's name and the CronJob's template). 16 hex digits are plenty to
      # tell two configurations apart and stay within the 63 characters that
      # some tools (podman kube play) allow for an annotation value.
      checksum/config: {{ print (include (print $.Template.BasePath "/configmap.yaml") .) (include (print $.Template.BasePath "/secret.yaml") .) | sha256sum | trunc 16 }}
      {{- with .Values.podAnnotations }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  spec:
    restartPolicy: Never
    # The job calls no Kubernetes API.
    automountServiceAccountToken: false
    {{- with .Values.serviceAccountName }}
    serviceAccountName: {{ . }}
    {{- end }}
    # Service links would add a variable per Service of the namespace; the
    # job's configuration is exactly the variables below.
    enableServiceLinks: false
    terminationGracePeriodSeconds: {{ include "api-consumer.terminationGracePeriodSeconds" . }}
    securityContext:
      {{- include "api-consumer.podSecurityContext" . | nindent 6 }}
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if .Values.demo.enabled }}
    initContainers:
      - name: wait-for-nodes
        image: {{ include "api-consumer.toolsImage" . }}
        imagePullPolicy: {{ .Values.demo.toolsImage.pullPolicy }}
        command:
          - sh
          - -c
          - |
            {{- .Files.Get "files/wait-for-nodes.sh" | trim | nindent 12 }}
        envFrom:
          - configMapRef:
              name: {{ include "api-consumer.envConfigMapName" . }}
        resources:
          requests:
            cpu: 10m
            memory: 16Mi
          limits:
            cpu: 100m
            memory: 32Mi
        securityContext:
          {{- include "api-consumer.containerSecurityContext" . | nindent 10 }}
    {{- end }}
    containers:
      - name: api-consumer
        image: {{ include "api-consumer.image" . }}
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        envFrom:
          - configMapRef:
              name: {{ include "api-consumer.envConfigMapName" . }}
          {{- with .Values.extraEnvFrom }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        {{- if or .Values.auth.token .Values.auth.existingSecret .Values.extraEnv }}
        env:
          {{- if or .Values.auth.token .Values.auth.existingSecret }}
          {{- if .Values.auth.asFile }}
          # The token as a file (the Secret mounted below), not in the
          # container's environment.
          - name: AUTH_TOKEN_FILE
            value: {{ printf "%s/token" (include "api-consumer.authDir" .) | quote }}
          {{- else }}
          - name: AUTH_TOKEN
            valueFrom:
              secretKeyRef:
                name: {{ include "api-consumer.authSecretName" . }}
                key: {{ include "api-consumer.authSecretKey" . }}
          {{- end }}
          {{- end }}
          {{- with .Values.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        {{- end }}
        volumeMounts:
          - name: group-ids
            mountPath: {{ include "api-consumer.groupIdsDir" . }}
            readOnly: true
          {{- if include "api-consumer.authFile" . }}
          - name: auth
            mountPath: {{ include "api-consumer.authDir" . }}
            readOnly: true
          {{- end }}
          {{- if include "api-consumer.caConfigMapName" . }}
          - name: ca
            mountPath: {{ include "api-consumer.caDir" . }}
            readOnly: true
          {{- end }}
          {{- if .Values.journal.enabled }}
          - name: journal
            mountPath: {{ include "api-consumer.journalDir" . }}
          {{- end }}
          {{- if .Values.config.reportPath }}
          - name: report
            mountPath: {{ dir .Values.config.reportPath }}
          {{- end }}
          {{- with .Values.extraVolumeMounts }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        resources:
          {{- toYaml .Values.resources | nindent 10 }}
        securityContext:
          {{- include "api-consumer.containerSecurityContext" . | nindent 10 }}
        # The termination message, shown by `kubectl describe pod` and in the
        # pod's status: every run that finishes (exit 0, 1 or 3) writes its
        # compact JSON summary here (totals, stop reason, and as many failed
        # groups as fit in 4 KiB, inconsistent ones first). A pod that stopped
        # before writing it (exit 2, a configuration or input error; or killed)
        # leaves the file empty, and then the end of its log is used instead.
        terminationMessagePath: {{ include "api-consumer.terminationMessagePath" . }}
        terminationMessagePolicy: FallbackToLogsOnError
    volumes:
      - name: group-ids
        configMap:
          name: {{ include "api-consumer.groupIdsConfigMapName" . }}
      {{- if include "api-consumer.authFile" . }}
      - name: auth
        secret:
          secretName: {{ include "api-consumer.authSecretName" . }}
          # Readable by the job's group (fsGroup), not by others.
          defaultMode: 0440
          items:
            - key: {{ include "api-consumer.authSecretKey" . }}
              path: token
      {{- end }}
      {{- with include "api-consumer.caConfigMapName" . }}
      - name: ca
        configMap:
          name: {{ . }}
          items:
            - key: {{ include "api-consumer.caConfigMapKey" $ }}
              path: ca.crt
      {{- end }}
      {{- if .Values.journal.enabled }}
      - name: journal
        persistentVolumeClaim:
          claimName: {{ include "api-consumer.journalClaimName" . }}
      {{- end }}
      {{- if .Values.config.reportPath }}
      # Where REPORT_PATH lands (the root filesystem is read-only).
      - name: report
        {{- toYaml .Values.reportVolume | nindent 8 }}
      {{- end }}
      {{- with .Values.extraVolumes }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with .Values.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
