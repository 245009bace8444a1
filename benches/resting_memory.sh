#!/usr/bin/env bash
# Resting memory: the daemon (release build, a SQLite file, console output)
# watches ACCOUNTS simulated accounts with RESOURCES prepaid resources each,
# polled every 15 s; WAIT seconds after start it prints the daemon's resident
# memory from /proc, split into anonymous and file-backed pages.
#
#   benches/resting_memory.sh [ACCOUNTS] [RESOURCES] [WAIT]   # default 100 5 90
#
# Needs python3 and Linux's /proc.
set -euo pipefail
accounts=${1:-100}; resources=${2:-5}; wait_s=${3:-90}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
purser="${CARGO_TARGET_DIR:-$root/target}/release/purser"
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The config benches/scrape.sh writes, polled every 15 s.
python3 - "$work" "$accounts" "$resources" "$port" <<'PY'
import sys
work, n, r, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
config = ['[store]\npath = "bench.db"\n[scheduler]\nschedule = "*/15 * * * * *"\njitter = "0s"\n'
          f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
          '[[providers]]\nname = "sim"\nkind = "simulated"\nscenario = "scenario.toml"\nconcurrency = 16\n'
          '[[outputs]]\nname = "console"\nkind = "console"\n']
scenario = []
for a in range(n):
    config.append(f'[[accounts]]\nid = "acct-{a:05}"\nprovider = "sim"\n')
    scenario.append(f'[[accounts]]\nid = "acct-{a:05}"\nbalance = "{500 + a * 7919 % 60000}"\n'
                    'burn_per_day = "300"\nreport_spend = true\n')
    for i in range(r):
        scenario.append(f'[[accounts.resources]]\nid = "ins-{a:05}-{i}"\nproduct = "cvm"\n'
                        f'expires_in = "{1 + (a + i) % 40}d"\nrenewal = "manual"\n')
open(f"{work}/purser.toml", "w").write("".join(config))
open(f"{work}/scenario.toml", "w").write("".join(scenario))
PY

(cd "$work" && exec "$purser" run --config purser.toml >/dev/null 2>"$work/log") &
pid=$!
sleep "$wait_s"
if ! kill -0 "$pid" 2>/dev/null; then
  echo "the daemon stopped:" >&2; cat "$work/log" >&2; exit 1
fi
python3 - "$pid" "$accounts" "$resources" "$wait_s" <<'PY'
import sys
pid, n, r, w = sys.argv[1:]
status = dict(l.split(':', 1) for l in open(f"/proc/{pid}/status"))
kib = lambda k: int(status[k].split()[0]) if k in status else 0
mib = lambda v: f"{v / 1024:.1f} MiB"
print(f"{n} accounts x {r} resources, {w} s after start: "
      f"VmRSS {mib(kib('VmRSS'))} ({mib(kib('RssAnon'))} anonymous, "
      f"{mib(kib('RssFile'))} file-backed), threads {status['Threads'].strip()}")
PY
