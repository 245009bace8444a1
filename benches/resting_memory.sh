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

# The watch benches/scrape.sh reads, polled every 15 s.
python3 "$root/benches/watch_config.py" "$work" "$accounts" "$resources" "$port" "*/15 * * * * *"

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
