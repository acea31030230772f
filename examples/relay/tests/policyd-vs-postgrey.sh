#!/usr/bin/env bash
# `portcullis-relay policyd` side by side with postgrey (Debian's `postgrey`
# package), both on loopback, both asked by the same client
# (`crates/portcullis-policyd/examples/policy_load.rs`) speaking the Postfix
# policy protocol with the attributes Postfix 3.7 sends at RCPT:
#
#   1. decisions: the same triplets to both servers (new, too early, after
#      the delay, variants of a passed triplet, auto-whitelisting of clients);
#      every disagreement is printed;
#   2. requests per second with C connections, one request in flight each
#      (as Postfix's smtpd processes ask): `new` triplets (write path) and
#      `known` (passed) triplets (read path).
#
# Both servers use their defaults but a DELAY-second greylist delay (postgrey:
# --delay; policyd: [greylist] delay_secs) and keep state on disk (postgrey:
# BerkeleyDB in its --dbdir; policyd: redb, fsync once a second with
# --greylist-sync flush, and also the crash-safe every-write mode).
#
# Not in CI (it sleeps for the delays and takes about a minute). Run as root
# from the repository root:
#
#   apt-get install -y postgrey
#   bash examples/relay/tests/policyd-vs-postgrey.sh [CONNECTIONS] [SECONDS]
#
# SKIP_BUILD=1 uses the release binaries already in $CARGO_TARGET_DIR.
#
set -euo pipefail

CONNECTIONS=${1:-8}
SECONDS_PER_RUN=${2:-5}
DELAY=2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/portcullis-target}

command -v postgrey >/dev/null || { echo "postgrey not installed (apt-get install postgrey)"; exit 1; }
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -q -p portcullis-relay
    cargo build --release -q -p portcullis-policyd --example policy_load
fi
RELAY=$CARGO_TARGET_DIR/release/portcullis-relay
LOAD=$CARGO_TARGET_DIR/release/examples/policy_load

work=$(mktemp -d)
chmod 755 "$work" # postgrey drops to its own user and must reach its dbdir
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/postgrey.pid" ] && kill "$(cat "$work/postgrey.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$1))" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened"; [ -n "${2:-}" ] && cat "$2"; exit 1
}

# Start postgrey with a fresh dbdir on port $1.
start_postgrey() {
    local dir=$work/postgrey-$1
    mkdir -p "$dir" && chown postgrey:postgrey "$dir"
    postgrey --inet=127.0.0.1:"$1" --dbdir="$dir" --delay=$DELAY --user=postgrey --group=postgrey \
        --pidfile="$work/postgrey.pid" --daemonize --quiet
    wait_port "$1" /dev/null
}
stop_postgrey() { kill "$(cat "$work/postgrey.pid")"; rm -f "$work/postgrey.pid"; sleep 0.5; }

# Start policyd with a fresh data dir on port $1; extra options follow.
start_policyd() {
    local port=$1; shift
    local dir=$work/policyd-$port
    mkdir -p "$dir"
    printf '[server]\ndata_dir = "%s"\nlog = "warn"\n[greylist]\nenabled = true\ndelay_secs = %s\n' "$dir" "$DELAY" > "$dir/relay.toml"
    "$RELAY" --config "$dir/relay.toml" policyd --listen 127.0.0.1:"$port" "$@" > "$dir/out.log" 2>&1 &
    pids+=($!)
    POLICYD_PID=$!
    wait_port "$port" "$dir/out.log"
}
stop_policyd() { kill "$POLICYD_PID"; wait "$POLICYD_PID" 2>/dev/null || true; }

echo "== decisions: A = portcullis policyd (redb, flush), B = postgrey $(dpkg-query -W -f='${Version}' postgrey 2>/dev/null)"
p1=$(free_port); start_policyd "$p1" --greylist-sync flush
p2=$(free_port); start_postgrey "$p2"
"$LOAD" compare 127.0.0.1:"$p1" 127.0.0.1:"$p2" $DELAY
stop_policyd; stop_postgrey

echo "== requests/s, $CONNECTIONS connections, ${SECONDS_PER_RUN} s each (fresh state per run)"
for workload in new known; do
    p=$(free_port); start_postgrey "$p"
    echo -n "postgrey                 "; "$LOAD" bench 127.0.0.1:"$p" "$CONNECTIONS" "$SECONDS_PER_RUN" $workload $DELAY
    stop_postgrey
    for mode in "--greylist-sync flush" "--greylist-sync every-write" "--greylist-store memory"; do
        p=$(free_port)
        # shellcheck disable=SC2086
        start_policyd "$p" $mode
        printf 'policyd %-17s' "${mode#--greylist-}"; "$LOAD" bench 127.0.0.1:"$p" "$CONNECTIONS" "$SECONDS_PER_RUN" $workload $DELAY
        stop_policyd
    done
done
