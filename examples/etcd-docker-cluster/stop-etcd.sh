#!/usr/bin/env bash
# Stop members of the cluster start-etcd.sh started; their data stays in DATA_DIR.
#
#   stop-etcd.sh DATA_DIR [MEMBER...]      (MEMBER: 1, 2 or 3; default: all)
set -euo pipefail

source "$(dirname "$0")/members.sh" "$@"

for m in "${members[@]}"; do
    pidfile=$data/etcd-$m.pid
    if [ ! -f "$pidfile" ]; then
        echo "etcd-$m: not started here"
        continue
    fi
    pid=$(cat "$pidfile")
    # The pid is only ours while that process is still an etcd.
    if alive "$m" && kill "$pid" 2>/dev/null; then
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
