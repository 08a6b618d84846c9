#!/usr/bin/env bash
# Starts the single-node SLURM cluster of tests/slurm/slurm.conf.template (as root): munged as the
# munge user, then slurmctld and slurmd, and waits until the node is idle. Idempotent: daemons that
# already run are left alone, existing state dirs are reused.
# Needs: apt-get install slurm-wlm munge.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state=/var/lib/slurm/encoder-sweep
conf=/etc/slurm/slurm.conf
host="$(hostname -s)"
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

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

running /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
running "$state/slurmctld.pid" || /usr/sbin/slurmctld
running "$state/slurmd.pid" || /usr/sbin/slurmd

for _ in $(seq 60); do
    if [ "$(sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ]; then
        sinfo
        exit 0
    fi
    sleep 1
done
echo "error: the SLURM node $host is not idle after 60 s: see $state/slurmctld.log and $state/slurmd.log" >&2
sinfo >&2 || true
exit 1
