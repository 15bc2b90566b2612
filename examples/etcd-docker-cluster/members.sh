# Sourced by start-etcd.sh and stop-etcd.sh: their arguments (DATA_DIR [MEMBER...],
# MEMBER 1, 2 or 3, default all) and whether a member started in DATA_DIR still runs.
if [ $# -lt 1 ]; then
    echo "usage: $0 DATA_DIR [MEMBER...]   (MEMBER: 1, 2 or 3; default: all)" >&2
    exit 2
fi
data=$1
shift
members=("$@")
[ ${#members[@]} -gt 0 ] || members=(1 2 3)
for m in "${members[@]}"; do
    case $m in 1|2|3) ;; *) echo "$0: no member $m (1, 2 or 3)" >&2; exit 2 ;; esac
done

# A pid file whose process is gone, or is no longer an etcd, does not count.
alive() {
    local pid
    pid=$(cat "$data/etcd-$1.pid" 2>/dev/null) || return 1
    grep -qa etcd "/proc/$pid/cmdline" 2>/dev/null
}
