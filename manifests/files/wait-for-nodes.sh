# shellcheck shell=sh
# Init container of the job's pod (demo cluster only), run by busybox sh:
# waits until every node in NODES answers GET /healthz. A demo node's DNS name
# exists only once its pod is ready, and the job would otherwise spend its
# retries on a cluster that is still starting. The Job's activeDeadlineSeconds
# bounds the wait.
set -u
# timeout(1), not wget -T: some busybox builds crash on -T.
old_ifs=$IFS
IFS=,
for node in $NODES; do
    IFS=$old_ifs
    until timeout 5 wget -q -O /dev/null "$node/healthz"; do
        echo "waiting for $node"
        sleep 2
    done
    echo "$node is up"
done
