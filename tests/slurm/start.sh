#!/usr/bin/env bash
# Starts the single-node SLURM cluster of tests/slurm/slurm.conf.template (as root): munged as the
# munge user, then slurmctld and slurmd, and waits until the node is idle. Idempotent: daemons that
# already run are left alone, existing state dirs are reused. The cluster is the tests' alone and no
# test runs while it starts, so any job in its queue was left by a run that died (a CI or a session
# stopped mid-test, whose jobs the controller's saved state brings back as running or requeued): it
# is cancelled, and a node drained by such a job's end is resumed.
# Needs: apt-get install slurm-wlm munge.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state=/var/lib/slurm/encoder-sweep
conf=/etc/slurm/slurm.conf
host="$(hostname -s)"
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))

# alive and not a zombie: a daemon killed in a container whose init reaps late keeps its pid a while
running() { [ -f "$1" ] && ps -o stat= -p "$(cat "$1")" 2>/dev/null | grep -qv '^Z'; }

mkdir -p "$state/ctld" "$state/d" /run/munge /var/log/munge
chown munge:munge /run/munge /var/log/munge
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
sed -e "s/@HOST@/$host/g" -e "s/@CPUS@/$(nproc)/g" -e "s/@MEMORY_MB@/$memory_mb/g" -e "s#@STATE@#$state#g" \
    "$here/slurm.conf.template" > "$conf.new"
# a changed config needs the daemons restarted; an unchanged one leaves them running
if ! cmp -s "$conf.new" "$conf"; then
    mv "$conf.new" "$conf"
    for pid in "$state/slurmd.pid" "$state/slurmctld.pid"; do
        if running "$pid"; then kill "$(cat "$pid")"; sleep 1; fi
    done
else
    rm "$conf.new"
fi

start_daemons() {
    running /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
    running "$state/slurmctld.pid" || /usr/sbin/slurmctld
    running "$state/slurmd.pid" || /usr/sbin/slurmd
}

# waits up to $1 s for the node to be idle, cancelling left jobs and resuming a drained node
idle_within() {
    for _ in $(seq "$1"); do
        if left="$(squeue -h -o %A 2>/dev/null)"; then
            # shellcheck disable=SC2086  # one id per word
            [ -z "$left" ] || { echo "cancelling jobs left by an earlier run: $(echo $left)"; scancel $left; }
            case "$(sinfo -h -n "$host" -o %t)" in
            idle) sinfo; return 0 ;;
            drain* | drng) scontrol update NodeName="$host" State=RESUME ;;
            esac
        fi
        sleep 1
    done
    return 1
}

start_daemons
idle_within 20 && exit 0
# a cancelled job whose processes died with the machine can hold the node until the controller next
# pings slurmd, a minute or more later; daemons started again find it free (measured: a second start
# after such a failure was idle within a second)
echo "the node is still busy: restarting slurmctld and slurmd"
for pid in "$state/slurmd.pid" "$state/slurmctld.pid"; do
    if running "$pid"; then kill "$(cat "$pid")"; fi
done
for _ in $(seq 10); do running "$state/slurmd.pid" || running "$state/slurmctld.pid" || break; sleep 1; done
start_daemons
idle_within 60 && exit 0
echo "error: the SLURM node $host is not idle after 80 s: see $state/slurmctld.log and $state/slurmd.log" >&2
sinfo >&2 || true
exit 1
