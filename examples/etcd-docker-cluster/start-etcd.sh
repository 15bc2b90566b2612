#!/usr/bin/env bash
# Start a three-member etcd cluster on 127.0.0.1, in the background.
#
#   start-etcd.sh DATA_DIR [MEMBER...]
#
# MEMBER is 1, 2 or 3 (default: all three). Member N keeps its data in DATA_DIR/etcd-N,
# logs to DATA_DIR/etcd-N.log and writes its pid to DATA_DIR/etcd-N.pid. Starting a
# member that was stopped (stop-etcd.sh) brings it back with its data, and it rejoins.
# The script returns once every member it started answers /health.
#
# Ports (client, peer): 2379/2380, 22379/22380, 32379/32380; override with
# KUBECORE_ETCD_CLIENT_PORTS="p1 p2 p3" and KUBECORE_ETCD_PEER_PORTS="p1 p2 p3".
set -euo pipefail

source "$(dirname "$0")/members.sh" "$@"

read -r -a client_ports <<<"${KUBECORE_ETCD_CLIENT_PORTS:-2379 22379 32379}"
read -r -a peer_ports <<<"${KUBECORE_ETCD_PEER_PORTS:-2380 22380 32380}"
if [ ${#client_ports[@]} -ne 3 ] || [ ${#peer_ports[@]} -ne 3 ]; then
    echo "$0: KUBECORE_ETCD_CLIENT_PORTS and KUBECORE_ETCD_PEER_PORTS need three ports each" >&2
    exit 2
fi
etcd=${ETCD_BINARY:-etcd}
command -v "$etcd" >/dev/null || { echo "$0: etcd not found (apt-get install etcd-server)" >&2; exit 1; }

mkdir -p "$data"
data=$(cd "$data" && pwd)
initial_cluster=""
for i in 1 2 3; do
    initial_cluster+="${initial_cluster:+,}etcd-$i=http://127.0.0.1:${peer_ports[i-1]}"
done

started=()
for m in "${members[@]}"; do
    if alive "$m"; then
        echo "etcd-$m already running (pid $(cat "$data/etcd-$m.pid"))"
        continue
    fi
    client=http://127.0.0.1:${client_ports[m-1]}
    peer=http://127.0.0.1:${peer_ports[m-1]}
    # The initial-cluster flags only matter the first time; a restarted member reads
    # its membership from its data dir. setsid: Ctrl-C in this terminal must not reach it.
    setsid "$etcd" --name "etcd-$m" --data-dir "$data/etcd-$m" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$initial_cluster" --initial-cluster-state new \
        --initial-cluster-token kubecore-example \
        </dev/null >>"$data/etcd-$m.log" 2>&1 &
    echo $! >"$data/etcd-$m.pid"
    started+=("$m")
done

# A member is healthy once it sees a leader, so members started together wait for
# each other here.
for m in "${started[@]}"; do
    url=http://127.0.0.1:${client_ports[m-1]}/health
    for _ in $(seq 300); do
        if curl -fsS --max-time 1 "$url" 2>/dev/null | grep -q '"health":"true"'; then
            echo "etcd-$m up: 127.0.0.1:${client_ports[m-1]} (pid $(cat "$data/etcd-$m.pid"))"
            continue 2
        fi
        if ! alive "$m"; then
            echo "$0: etcd-$m exited; see $data/etcd-$m.log" >&2
            tail -n 20 "$data/etcd-$m.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$0: etcd-$m not healthy after 30 s; see $data/etcd-$m.log" >&2
    exit 1
done
