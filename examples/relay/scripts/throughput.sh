#!/usr/bin/env bash
# End-to-end throughput of the release relay, measured against Postfix's
# smtp-sink in the same run:
#   floor: smtp-source straight into smtp-sink (no relay);
#   ours:  smtp-source → relay MX (spool fsync before each 250) → queue →
#          SMTP client → smtp-sink.
# Usage: bash examples/relay/scripts/throughput.sh [messages] [sessions] [size]
# Needs Postfix's smtp-source/smtp-sink (.ci/run installs them).
set -euo pipefail
MESSAGES=${1:-2000}
SESSIONS=${2:-20}
SIZE=${3:-4096}
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/portcullis-target}"
if [ -z "${RELAY:-}" ]; then
  cargo build --release -q -p portcullis-relay
  RELAY="$CARGO_TARGET_DIR/release/portcullis-relay"
fi
WORK=$(mktemp -d)
chmod 777 "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
user=(); [ "$(id -u)" -eq 0 ] && user=(-u nobody)

# Floor: straight into smtp-sink.
SINK1=$(free_port)
/usr/sbin/smtp-sink "${user[@]}" 127.0.0.1:$SINK1 256 & pids+=($!)
sleep 0.3
t0=$(now)
/usr/sbin/smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f a@bench.test -t b@sink.test 127.0.0.1:$SINK1
t1=$(now)

# Through the relay.
SINK2=$(free_port)
mkdir -p "$WORK/dump" && chmod 777 "$WORK/dump"
/usr/sbin/smtp-sink "${user[@]}" -d "$WORK/dump/%M." 127.0.0.1:$SINK2 256 & pids+=($!)
cat > "$WORK/relay.toml" <<TOML
[server]
log = "warn"
[mx]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
[relay]
networks = ["127.0.0.1"]
[delivery]
tls = "never"
concurrency = 32
[delivery.routes]
"sink.test" = "127.0.0.1:$SINK2"
TOML
"$RELAY" --config "$WORK/relay.toml" --data-dir "$WORK/data" > "$WORK/out" 2> "$WORK/log" & pids+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/out" && break; sleep 0.1; done
MX=$(sed -n 's/.*mx=\([^ ]*\).*/\1/p' "$WORK/out")
t2=$(now)
/usr/sbin/smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f a@bench.test -t b@sink.test "$MX"
t3=$(now)
deadline=$((SECONDS + 300))
while [ "$(ls "$WORK/dump" | wc -l)" -lt "$MESSAGES" ]; do
  sleep 0.05
  if [ "$SECONDS" -gt "$deadline" ]; then echo "timeout waiting for delivery" >&2; exit 1; fi
done
t4=$(now)
python3 - "$MESSAGES" "$t0" "$t1" "$t2" "$t3" "$t4" <<'PY'
import sys
n = int(sys.argv[1]); t0, t1, t2, t3, t4 = map(float, sys.argv[2:])
floor = n / (t1 - t0); accept = n / (t3 - t2); e2e = n / (t4 - t2)
print(f"floor (smtp-source -> smtp-sink): {floor:.0f} msg/s")
print(f"relay accept (250 after fsync):   {accept:.0f} msg/s  ({accept/floor:.2f}x floor)")
print(f"relay end to end (at smtp-sink):  {e2e:.0f} msg/s  ({e2e/floor:.2f}x floor)")
PY
