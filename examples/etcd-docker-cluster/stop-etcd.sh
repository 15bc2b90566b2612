#!/usr/bin/env bash
# Stop members of the cluster start-etcd.sh started; their data stays in DATA_DIR.
#
#   stop-etcd.sh DATA_DIR [MEMBER...]      (MEMBER: 1, 2 or 3; default: all)
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 DATA_DIR [MEMBER...]   (MEMBER: 1, 2 or 3; default: all)" >&2
    exit 2
fi
data=$1
shift
members=("$@")
[ ${#members[@]} -gt 0 ] || members=(1 2 3)

for m in "${members[@]}"; do
    pidfile=$data/etcd-$m.pid
    if [ ! -f "$pidfile" ]; then
        echo "etcd-$m: not started here"
        continue
    fi
    pid=$(cat "$pidfile")
    # The pid is only ours while that process is still an etcd.
    if grep -qa etcd "/proc/$pid/cmdline" 2>/dev/null && kill "$pid" 2>/dev/null; then
        # etcd stops within a second or two on SIGTERM.
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        echo "etcd-$m stopped"
    else
        echo "etcd-$m: not running"
    fi
    rm -f "$pidfile"
done
