# shellcheck shell=sh
# `helm test` pod of the demo cluster, run by busybox sh: checks that every
# node in NODES is at the goal of OPERATION for every id in GROUP_IDS_FILE
# (create and reconcile: holds it, delete: does not), reading GET /_sim/state, which the
# simulator never faults. Retries until TIMEOUT_SECS, since the job may still
# be running; prints each node and group that is not at the goal.
set -u

# verify and a dry run write nothing, so there is no goal to check; a
# reconcile makes every listed id present (what it prunes is not listed).
if [ "${DRY_RUN:-false}" = true ]; then
    echo "DRY_RUN=true: the job writes nothing; nothing to check"
    exit 0
fi
case $OPERATION in
    create|reconcile) goal=present ;;
    delete) goal=absent ;;
    verify) echo "OPERATION=verify writes nothing; nothing to check"; exit 0 ;;
    *) echo "unknown OPERATION $OPERATION" >&2; exit 2 ;;
esac

# One id per line: the job's rules (trimmed, blank and # lines skipped).
ids() {
    sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e '/^$/d' -e '/^#/d' "$GROUP_IDS_FILE"
}

# Prints the groups not at the goal on every node; true when there are none.
check() {
    bad=0
    old_ifs=$IFS
    IFS=,
    for node in $NODES; do
        IFS=$old_ifs
        # timeout(1), not wget -T: some busybox builds crash on -T.
        if ! state=$(timeout 10 wget -q -O - "$node/_sim/state"); then
            echo "$node: /_sim/state could not be read"
            bad=1
            continue
        fi
        case $state in
            *'"groups":['*) ;;
            *) echo "$node: /_sim/state has no groups: $state"; bad=1; continue ;;
        esac
        # {"groups":["a","b"],"requests":...}: keep the array's elements
        # between commas, so that ,"<id>", matches one whole element (an
        # element's own quotes are escaped).
        groups=${state#*\"groups\":\[}
        groups=",${groups%%\],\"requests\":*},"
        while IFS= read -r id; do
            [ -n "$id" ] || continue
            # The id as JSON writes it: backslashes and quotes escaped.
            quoted=$(printf '%s' "$id" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
            case $groups in
                *",\"$quoted\","*) held=present ;;
                *) held=absent ;;
            esac
            if [ "$held" != "$goal" ]; then
                echo "$node: group $id is $held, expected $goal"
                bad=1
            fi
        done <<IDS
$(ids)
IDS
    done
    return $bad
}

deadline=$(($(date +%s) + TIMEOUT_SECS))
while ! report=$(check); do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "$report"
        echo "FAIL: not every node is at the goal after ${TIMEOUT_SECS}s"
        exit 1
    fi
    sleep 3
done
echo "OK: $(ids | wc -l) group(s) $goal on every node of $NODES"
