#!/usr/bin/env bash
# Head-to-head: Portcullis (examples/relay, release build) against a private
# Postfix instance, both relaying to Postfix's smtp-sink, on loopback only.
#
# For each server, smtp-source sends the same messages (count, size,
# concurrency); we time
#   accept: smtp-source start -> smtp-source done (every 250 came after the
#           server's durable queue write: Portcullis' spool fsync, Postfix's
#           cleanup fsync of the queue file);
#   end to end: smtp-source start -> the sink has all N messages;
# and report the peak RSS of each server (Postfix: summed over master and
# all its children; PSS too, which counts shared libraries once) and how
# many connections each opened to the sink. Then, on fresh instances, idle sessions are opened
# (banner read, then nothing) and memory per session is reported:
# Portcullis with IDLE sessions (default 1000), Postfix with as many as its
# default process limit allows (100 smtpd processes; connections beyond
# that wait in the listen queue unanswered, so they are not counted).
#
# Not run in CI. Needs root (Postfix's master starts as root), Postfix
# (`postfix`, `smtp-source`, `smtp-sink`: Debian package `postfix`), python3.
# Usage: bash benches/relay-vs-postfix.sh
# Knobs (environment): MESSAGES=5000 SESSIONS=20 SIZE=4096 IDLE=1000
#   DELIVERY_CONCURRENCY=20 (both servers; Postfix's default per-destination
#   limit) RELAY_LOG=info (one line per message, like Postfix's maillog)
#   ROUNDS=1 (repeat the throughput pair; Postfix then Portcullis each round)
#   RELAY=path (skip the build) TIMEOUT=300 (seconds to wait for the sink)
#   KEEP=1 (keep the work directory: Postfix's maillog, the relay's log)
set -euo pipefail
MESSAGES=${MESSAGES:-5000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
IDLE=${IDLE:-1000}
DELIVERY_CONCURRENCY=${DELIVERY_CONCURRENCY:-20}
RELAY_LOG=${RELAY_LOG:-info}
ROUNDS=${ROUNDS:-1}
TIMEOUT=${TIMEOUT:-300}
SBIN=/usr/sbin

if [ "$(id -u)" -ne 0 ]; then
  echo "relay-vs-postfix: must run as root (Postfix's master drops to mail_owner)" >&2
  exit 1
fi
for tool in postfix smtp-source smtp-sink; do
  [ -x "$SBIN/$tool" ] || { echo "relay-vs-postfix: $SBIN/$tool missing (apt-get install postfix)" >&2; exit 1; }
done
id postfix >/dev/null && getent group postdrop >/dev/null || {
  echo "relay-vs-postfix: needs the postfix user and postdrop group (Debian's postfix package makes them)" >&2; exit 1; }

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/portcullis-target}"
if [ -z "${RELAY:-}" ]; then
  cargo build --release -q -p portcullis-relay
  RELAY="$CARGO_TARGET_DIR/release/portcullis-relay"
fi
# 1000 idle sessions need 1000+ descriptors in the client and the relay.
ulimit -n 8192

# Postfix wants the parents of its queue directory root-owned and not
# world-writable: WORK is 0755; only the sink dump directories are 0777.
WORK=$(mktemp -d /tmp/relay-vs-postfix.XXXXXX)
chmod 755 "$WORK"
pids=()
postfix_etcs=()
cleanup() {
  set +e
  for etc in "${postfix_etcs[@]}"; do "$SBIN/postfix" -c "$etc" stop >/dev/null 2>&1; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK (logs: postfix-*/maillog, relay-*/log)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
wait_port() { # port seconds
  local deadline=$((SECONDS + $2))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1).close()" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "nothing listening on $1" >&2; return 1; }
    sleep 0.1
  done
}

# --- helpers in Python: memory sampling, idle sessions ---------------------
cat > "$WORK/mem.py" <<'PY'
"""mem.py tree ROOTPID -> "rss_kib pss_kib hwm_kib nprocs" summed over
ROOTPID and all its descendants. mem.py sample ROOTPID OUT: until killed,
write the peak of the summed RSS and PSS seen (every 0.2 s) to OUT."""
import os, sys, time

def children():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids

def tree(root):
    kids, out, todo = children(), [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out

def field(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def measure(root):
    pids = tree(root)
    rss = sum(field(f"/proc/{p}/status", "VmRSS") for p in pids)
    hwm = sum(field(f"/proc/{p}/status", "VmHWM") for p in pids)
    pss = sum(field(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return rss, pss, hwm, len(pids)

if sys.argv[1] == "tree":
    print(*measure(int(sys.argv[2])))
else:
    root, out = int(sys.argv[2]), sys.argv[3]
    peak_rss = peak_pss = 0
    while True:
        rss, pss, _, _ = measure(root)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        with open(out + ".tmp", "w") as f:
            f.write(f"{peak_rss} {peak_pss}\n")
        os.replace(out + ".tmp", out)
        time.sleep(0.2)
PY

cat > "$WORK/idle.py" <<'PY'
"""idle.py PORT N READYFILE: open N sessions, read each banner, write how
many got a 220 to READYFILE, then hold them all open until killed."""
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks, greeted = [], 0
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(5)
    try:
        if s.recv(512).startswith(b"220"):
            greeted += 1
    except socket.timeout:
        pass
    socks.append(s)
with open(ready, "w") as f:
    f.write(f"{greeted}\n")
while True:
    time.sleep(60)
PY

# --- the sink ---------------------------------------------------------------
SINK_PID=
SINK_DIR=
start_sink() { # name -> sets SINK_PORT SINK_DIR SINK_PID
  SINK_PORT=$(free_port)
  SINK_DIR="$WORK/sink-$1"
  mkdir -p "$SINK_DIR" && chmod 777 "$SINK_DIR"
  # -u: smtp-sink drops root to this user; -d: one file per message.
  "$SBIN/smtp-sink" -u nobody -d "$SINK_DIR/m." "127.0.0.1:$SINK_PORT" 1024 &
  SINK_PID=$!
  pids+=("$SINK_PID")
  wait_port "$SINK_PORT" 10
}
sink_count() { find "$SINK_DIR" -type f | wc -l; }
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# --- Portcullis -------------------------------------------------------------
RELAY_PID=
start_relay() { # name sinkport -> sets RELAY_PID MX_PORT
  local dir="$WORK/relay-$1"
  mkdir -p "$dir"
  cat > "$dir/relay.toml" <<TOML
[server]
hostname = "portcullis-bench.example"
log = "$RELAY_LOG"
[mx]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
[relay]
# Opt-in relaying for the benchmark client, like Postfix's mynetworks.
networks = ["127.0.0.0/8"]
[delivery]
tls = "never"
concurrency = $DELIVERY_CONCURRENCY
[delivery.routes]
"sink.test" = "127.0.0.1:$2"
[limits]
max_connections = $((IDLE + 100))
max_connections_per_client = $((IDLE + 100))
TOML
  "$RELAY" --config "$dir/relay.toml" --data-dir "$dir/data" > "$dir/out" 2> "$dir/log" &
  RELAY_PID=$!
  pids+=("$RELAY_PID")
  for _ in $(seq 100); do grep -q listening "$dir/out" && break; sleep 0.1; done
  MX_PORT=$(sed -n 's/.*mx=[^ ]*:\([0-9]*\).*/\1/p' "$dir/out")
  [ -n "$MX_PORT" ] || { echo "relay did not start:" >&2; cat "$dir/out" "$dir/log" >&2; exit 1; }
}

# --- Postfix ----------------------------------------------------------------
POSTFIX_ETC=
POSTFIX_PID=
start_postfix() { # name sinkport -> sets POSTFIX_ETC POSTFIX_PID SMTPD_PORT
  local root="$WORK/postfix-$1"
  mkdir -p "$root/etc" "$root/queue" "$root/data"
  chmod 755 "$root"
  chown postfix "$root/data"
  SMTPD_PORT=$(free_port)
  cat > "$root/etc/main.cf" <<CF
compatibility_level = 3.6
config_directory = $root/etc
queue_directory = $root/queue
data_directory = $root/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix-bench.example
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$2
smtp_tls_security_level = none
smtpd_tls_security_level = none
# No local delivery here: no alias database to open (smtpd logs an error
# for a missing /etc/aliases.db otherwise).
alias_maps =
alias_database =
default_destination_concurrency_limit = $DELIVERY_CONCURRENCY
maillog_file_prefixes = $root
maillog_file = $root/maillog
CF
  # Debian's master.cf services, minus local delivery and chroot.
  cat > "$root/etc/master.cf" <<CF
127.0.0.1:$SMTPD_PORT inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
CF
  POSTFIX_ETC="$root/etc"
  postfix_etcs+=("$POSTFIX_ETC")
  "$SBIN/postfix" -c "$POSTFIX_ETC" check >"$root/check.out" 2>&1 || { cat "$root/check.out" >&2; exit 1; }
  "$SBIN/postfix" -c "$POSTFIX_ETC" start >"$root/start.out" 2>&1 || { cat "$root/start.out" >&2; exit 1; }
  wait_port "$SMTPD_PORT" 20
  POSTFIX_PID=$(tr -d ' ' < "$root/queue/pid/master.pid")
}
stop_postfix() {
  "$SBIN/postfix" -c "$POSTFIX_ETC" stop >/dev/null 2>&1 || true
  for _ in $(seq 50); do kill -0 "$POSTFIX_PID" 2>/dev/null || break; sleep 0.1; done
}

# Long steps run in the main shell and write their results to a file: a
# signal then interrupts `wait` at once, and the EXIT trap sees every pid.
# (A `read < <(step)` would hold a SIGTERM until the step ends.)

# --- one throughput measurement ---------------------------------------------
# run_throughput name port rootpid -> $WORK/result-name:
#   "accept e2e peak_rss peak_pss hwm nprocs got sink_connections"
run_throughput() {
  local name=$1 port=$2 root=$3
  python3 "$WORK/mem.py" sample "$root" "$WORK/peak-$name" &
  local sampler=$!
  pids+=("$sampler")
  local t0 t1 t2 got deadline
  t0=$(now)
  "$SBIN/smtp-source" -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" \
    -f bench@client.test -t rcpt@sink.test "127.0.0.1:$port" >"$WORK/source-$name" 2>&1 &
  local source=$!
  pids+=("$source")
  wait "$source" || true
  t1=$(now)
  deadline=$((SECONDS + TIMEOUT))
  while got=$(sink_count); [ "$got" -lt "$MESSAGES" ] && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.05
  done
  t2=$(now)
  if [ "$got" -lt "$MESSAGES" ]; then
    echo "[$name] WARNING: the sink got $got of $MESSAGES within ${TIMEOUT}s; its end-to-end rate is not a completion rate" >&2
  fi
  sleep 0.3
  stop_pid "$sampler"
  # Connections the server opened to the sink (closed ones linger in
  # TIME_WAIT for 60 s, longer than a phase; each phase has its own port).
  local conns
  # Each closed one is in TIME_WAIT on exactly one side; open ones counted
  # on the sink's side.
  conns=$(( $(ss -tanH state time-wait '( sport = :'"$SINK_PORT"' or dport = :'"$SINK_PORT"' )' | wc -l) \
          + $(ss -tanH state established '( sport = :'"$SINK_PORT"' )' | wc -l) ))
  local hwm
  read -r _ _ hwm nprocs < <(python3 "$WORK/mem.py" tree "$root")
  read -r prss ppss < "$WORK/peak-$name"
  if [ -s "$WORK/source-$name" ]; then
    echo "[$name] smtp-source said:" >&2
    sort "$WORK/source-$name" | uniq -c | sort -rn | head -5 >&2
  fi
  python3 - "$MESSAGES" "$t0" "$t1" "$t2" "$prss" "$ppss" "$hwm" "$nprocs" "$got" "$conns" > "$WORK/result-$name" <<'PY'
import sys
n = int(sys.argv[1]); t0, t1, t2 = map(float, sys.argv[2:5])
print(f"{n/(t1-t0):.1f} {n/(t2-t0):.1f} {' '.join(sys.argv[5:])}")
PY
}

# --- idle sessions ------------------------------------------------------------
# run_idle name port rootpid count -> $WORK/result-name:
#   "greeted rss_delta_kib pss_delta_kib"
run_idle() {
  local name=$1 port=$2 root=$3 n=$4
  local before after client
  sleep 1
  read -r rss0 pss0 _ _ < <(python3 "$WORK/mem.py" tree "$root")
  rm -f "$WORK/ready-$name"
  python3 "$WORK/idle.py" "$port" "$n" "$WORK/ready-$name" &
  client=$!
  pids+=("$client")
  for _ in $(seq 600); do [ -s "$WORK/ready-$name" ] && break; sleep 0.1; done
  sleep 2
  read -r rss1 pss1 _ _ < <(python3 "$WORK/mem.py" tree "$root")
  local greeted
  greeted=$(cat "$WORK/ready-$name" 2>/dev/null || echo 0)
  stop_pid "$client"
  echo "$greeted $((rss1 - rss0)) $((pss1 - pss0))" > "$WORK/result-$name"
}

echo "relay-vs-postfix: messages=$MESSAGES sessions=$SESSIONS size=$SIZE delivery_concurrency=$DELIVERY_CONCURRENCY relay_log=$RELAY_LOG rounds=$ROUNDS"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r), postfix $("$SBIN/postconf" -d -h mail_version 2>/dev/null), relay $("$RELAY" --version)"
summary=()
for round in $(seq "$ROUNDS"); do
  start_sink "pf$round"
  start_postfix "tp$round" "$SINK_PORT"
  run_throughput "postfix$round" "$SMTPD_PORT" "$POSTFIX_PID"
  read -r pf_acc pf_e2e pf_rss pf_pss pf_hwm pf_n pf_got pf_conns < "$WORK/result-postfix$round"
  stop_postfix
  stop_pid "$SINK_PID"

  start_sink "pc$round"
  start_relay "tp$round" "$SINK_PORT"
  run_throughput "portcullis$round" "$MX_PORT" "$RELAY_PID"
  read -r pc_acc pc_e2e pc_rss pc_pss pc_hwm pc_n pc_got pc_conns < "$WORK/result-portcullis$round"
  stop_pid "$RELAY_PID"
  stop_pid "$SINK_PID"

  python3 - <<PY
pf_acc, pf_e2e, pc_acc, pc_e2e = $pf_acc, $pf_e2e, $pc_acc, $pc_e2e
print(f"round $round ($MESSAGES msgs x $SIZE B, $SESSIONS sessions):")
print(f"  Postfix    accept {pf_acc:8.1f} msg/s   end to end {pf_e2e:8.1f} msg/s   at sink {$pf_got}/$MESSAGES")
print(f"  Portcullis accept {pc_acc:8.1f} msg/s   end to end {pc_e2e:8.1f} msg/s   at sink {$pc_got}/$MESSAGES")
print(f"  connections opened to the sink: Postfix $pf_conns, Portcullis $pc_conns")
print(f"  ratio Portcullis/Postfix: accept {pc_acc/pf_acc:.2f}x   end to end {pc_e2e/pf_e2e:.2f}x")
print(f"  peak memory: Postfix sum VmHWM {$pf_hwm/1024:.1f} MiB over $pf_n processes (sampled peak sum RSS {$pf_rss/1024:.1f} MiB, PSS {$pf_pss/1024:.1f} MiB)")
print(f"               Portcullis VmHWM {$pc_hwm/1024:.1f} MiB (sampled peak RSS {$pc_rss/1024:.1f} MiB, PSS {$pc_pss/1024:.1f} MiB)")
PY
done

# Idle sessions, on fresh instances (no sink traffic).
start_sink idle
start_relay idle "$SINK_PORT"
run_idle portcullis "$MX_PORT" "$RELAY_PID" "$IDLE"
read -r pc_greeted pc_drss pc_dpss < "$WORK/result-portcullis"
stop_pid "$RELAY_PID"
PF_IDLE=$("$SBIN/postconf" -d -h default_process_limit)
start_postfix idle "$SINK_PORT"
run_idle postfix "$SMTPD_PORT" "$POSTFIX_PID" "$PF_IDLE"
read -r pf_greeted pf_drss pf_dpss < "$WORK/result-postfix"
stop_postfix
python3 - <<PY
pcg, pfg = max($pc_greeted, 1), max($pf_greeted, 1)
print(f"idle sessions (banner read, then idle):")
print(f"  Portcullis: {$pc_greeted}/$IDLE greeted; RSS +{$pc_drss/1024:.1f} MiB = {$pc_drss*1024/pcg/1024:.1f} KiB/session (PSS {$pc_dpss*1024/pcg/1024:.1f} KiB/session)")
print(f"  Postfix:    {$pf_greeted}/$PF_IDLE greeted (default_process_limit = $PF_IDLE smtpd processes, not raised); "
      f"RSS +{$pf_drss/1024:.1f} MiB = {$pf_drss*1024/pfg/1024:.1f} KiB/session (PSS {$pf_dpss*1024/pfg/1024:.1f} KiB/session)")
PY
