#!/usr/bin/env bash
# What a Prometheus scrape of /metrics costs: the daemon (release build, a
# SQLite file) watches ACCOUNTS simulated accounts with RESOURCES prepaid
# resources each, polls them once, then SCRAPES scrapes are made one after
# another with curl. Prints the exposition's size and series, scrape
# latency (p50, p99, max) and the daemon's resident memory.
#
#   benches/scrape.sh [ACCOUNTS] [RESOURCES] [SCRAPES]     # default 1000 5 200
#
# Needs curl and python3.
set -euo pipefail
accounts=${1:-1000}; resources=${2:-5}; scrapes=${3:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
purser="$root/target/release/purser"
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

python3 "$root/benches/watch_config.py" "$work" "$accounts" "$resources" "$port" "0 0 0 * * *"

(cd "$work" && exec "$purser" run --config purser.toml >/dev/null 2>"$work/log") &
pid=$!
url="http://127.0.0.1:$port/metrics"
# Until every account has been polled once.
until curl -fs "$url" 2>/dev/null | python3 -c "
import sys
n = sum(float(l.split()[-1]) for l in sys.stdin if l.startswith('purser_polls_total'))
sys.exit(0 if n >= $accounts else 1)"; do sleep 0.5; done

curl -fs "$url" -o "$work/one.txt"
for _ in $(seq "$scrapes"); do
  curl -fs -o /dev/null -w '%{time_total}\n' "$url"
done > "$work/times"
python3 - "$work" "$pid" <<'PY'
import sys
work, pid = sys.argv[1], sys.argv[2]
text = open(f"{work}/one.txt").read()
series = sum(1 for l in text.splitlines() if l and not l.startswith("#"))
t = sorted(float(x) * 1000 for x in open(f"{work}/times"))
q = lambda p: t[min(len(t) - 1, int(p * len(t)))]
rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
print(f"exposition: {len(text) / 1024:.0f} KiB, {series} series")
print(f"scrape: p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {t[-1]:.1f} ms over {len(t)} scrapes")
print(f"daemon resident: {rss / 1024:.1f} MiB")
PY
