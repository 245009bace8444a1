#!/usr/bin/env bash
# Takeover time between two replicas on PostgreSQL: kill -9 the leader,
# time until the standby leads (its `leading since` less the kill), start
# the killed one again as a standby; N times (default 20). Prints each and
# the median and worst.
#
#   benches/takeover.sh [KILLS]
#
# Needs python3, psql, and PostgreSQL's initdb and pg_ctl (on PATH or under /usr/lib/postgresql);
# starts a throwaway cluster on a free port and removes it afterwards. As
# root, the cluster runs as the `postgres` user.
set -euo pipefail
kills=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
purser="$root/target/release/purser"

bin() {
  command -v "$1" 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -1
}
initdb=$(bin initdb); pg_ctl=$(bin pg_ctl); psql=$(bin psql)
[ -n "$initdb" ] && [ -n "$pg_ctl" ] || { echo "no initdb/pg_ctl" >&2; exit 1; }
work=$(mktemp -d)
as=()
if [ "$(id -u)" = 0 ]; then chown postgres "$work"; as=(runuser -u postgres --); fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as[@]}" "$initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 >/dev/null
"${as[@]}" "$pg_ctl" start -w -D "$work/data" -l "$work/server.log" \
  -o "-p $port -k $work -c listen_addresses=127.0.0.1" >/dev/null
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  "${as[@]}" "$pg_ctl" stop -m immediate -D "$work/data" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"${as[@]}" "$psql" -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE purser"
export PURSER_STORE_URL="postgres://postgres@127.0.0.1:$port/purser"

# The demo's accounts, polled every minute; the default 15 s lease.
cd "$work"
cp -r "$root/config" .
start() {
  "$purser" run --config config/demo.toml >>"$work/replicas.log" 2>&1 &
  pids+=($!)
}
leader() { "$purser" status --config config/demo.toml 2>/dev/null | sed -n 's/^leader: \([^ ]*\) (token.*leading since \([^;]*\);.*/\1 \2/p'; }

start; sleep 2; start
times=()
for i in $(seq 1 "$kills"); do
  # Wait until someone leads, then a random moment in its renewal cycle.
  until [ -n "$(leader)" ]; do sleep 0.2; done
  sleep "$(python3 -c 'import random; print(round(random.uniform(1, 6), 2))')"
  read -r holder _ <<<"$(leader)"
  pid=${holder##*:}
  killed=$(date +%s.%N)
  kill -9 "$pid"
  while :; do
    read -r now since <<<"$(leader)" || true
    if [ -n "${now:-}" ] && [ "$now" != "$holder" ]; then break; fi
    sleep 0.2
  done
  took=$(python3 -c "from datetime import datetime; print(round(datetime.fromisoformat('$since').timestamp() - $killed, 2))")
  times+=("$took")
  echo "kill $i: $holder killed, $now leads after ${took} s"
  start
done
python3 - "${times[@]}" <<'EOF'
import statistics, sys
t = sorted(float(x) for x in sys.argv[1:])
print(f"{len(t)} kills: median {statistics.median(t):.1f} s, worst {t[-1]:.1f} s, best {t[0]:.1f} s")
EOF
