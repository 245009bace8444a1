#!/usr/bin/env bash
# Resting memory beside what a team would run instead, in one run:
#
#   purser (release build, SQLite, console output) watching ACCOUNTS
#   simulated accounts with RESOURCES resources each, polled every 15 s;
#
#   Prometheus and Alertmanager (Debian's packages) watching the same
#   accounts through a static exporter page scraped every 15 s, with two
#   alerting rules (a low balance, a resource expiring within 7 days).
#
# WAIT seconds after all three start, it prints each one's resident memory
# from /proc (anonymous and file-backed) and purser's share of the other two.
#
#   benches/anchor_memory.sh [ACCOUNTS] [RESOURCES] [WAIT]   # default 100 5 90
#
# Needs python3, Linux's /proc, and prometheus and prometheus-alertmanager:
# found on the PATH, or installed with apt-get when run as root.
set -euo pipefail
accounts=${1:-100}; resources=${2:-5}; wait_s=${3:-90}
root=$(cd "$(dirname "$0")/.." && pwd)

# Debian names Alertmanager's binary prometheus-alertmanager.
if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null
  else
    echo "needs prometheus and prometheus-alertmanager (apt-get install prometheus prometheus-alertmanager)" >&2
    exit 2
  fi
fi
# Debian's packages start both as services; only the ones started here count.
for unit in prometheus prometheus-alertmanager; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$unit" 2>/dev/null; then
    echo "note: the $unit service runs too; it is not measured" >&2
  fi
done

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
purser="${CARGO_TARGET_DIR:-$root/target}/release/purser"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# purser's watch, as benches/resting_memory.sh runs it.
mkdir "$work/purser"
python3 "$root/benches/watch_config.py" "$work/purser" "$accounts" "$resources" "$(free_port)" "*/15 * * * * *"

# The same accounts as an exporter page: a balance each, and each resource's
# expiry time.
exporter_port=$(free_port)
mkdir "$work/exporter"
python3 - "$work/exporter/metrics" "$accounts" "$resources" <<'PY'
import sys, time
path, n, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
now = int(time.time())
lines = ["# TYPE cloud_balance_available gauge"]
for a in range(n):
    lines.append(f'cloud_balance_available{{account="acct-{a:05}",currency="CNY"}} {5000 + 37 * a}')
lines.append("# TYPE cloud_resource_expiry_timestamp_seconds gauge")
for a in range(n):
    for i in range(r):
        lines.append(f'cloud_resource_expiry_timestamp_seconds{{account="acct-{a:05}",resource="ins-{a:05}-{i}"}} {now + 86400 * (3 + 11 * i + a % 7)}')
open(path, "w").write("\n".join(lines) + "\n")
PY
(cd "$work/exporter" && exec python3 -m http.server "$exporter_port" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)

am_port=$(free_port)
cat >"$work/alertmanager.yml" <<EOF
route:
  receiver: ops
  group_by: [account]
  group_wait: 30s
receivers:
  - name: ops
EOF
cat >"$work/rules.yml" <<'EOF'
groups:
  - name: prepaid
    rules:
      - alert: LowBalance
        expr: cloud_balance_available < 6000
        for: 1m
      - alert: Expiring
        expr: cloud_resource_expiry_timestamp_seconds - time() < 7 * 86400
        for: 1m
EOF
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files: [$work/rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$am_port"]
scrape_configs:
  - job_name: clouds
    static_configs:
      - targets: ["127.0.0.1:$exporter_port"]
EOF

prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$(free_port)" >"$work/prometheus.log" 2>&1 &
prom=$!; pids+=($prom)
prometheus-alertmanager --config.file="$work/alertmanager.yml" --storage.path="$work/am" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= >"$work/alertmanager.log" 2>&1 &
am=$!; pids+=($am)
(cd "$work/purser" && exec "$purser" run --config purser.toml >/dev/null 2>"$work/purser.log") &
daemon=$!; pids+=($daemon)

sleep "$wait_s"
for p in "$prom:prometheus" "$am:alertmanager" "$daemon:purser"; do
  if ! kill -0 "${p%%:*}" 2>/dev/null; then
    echo "${p#*:} stopped:" >&2; cat "$work/${p#*:}.log" >&2; exit 1
  fi
done
python3 - "$prom" "$am" "$daemon" "$accounts" "$resources" "$wait_s" <<'PY'
import sys
prom, am, daemon, n, r, w = sys.argv[1:]
def rss(pid):
    status = dict(l.split(':', 1) for l in open(f"/proc/{pid}/status"))
    kib = lambda k: int(status[k].split()[0]) if k in status else 0
    return kib("VmRSS"), kib("RssAnon"), kib("RssFile")
mib = lambda v: f"{v / 1024:.1f} MiB"
rows = {"prometheus": rss(prom), "alertmanager": rss(am), "purser": rss(daemon)}
print(f"{n} accounts x {r} resources, 15 s polls, {w} s after start:")
for name, (total, anon, file) in rows.items():
    print(f"  {name:<13} VmRSS {mib(total):>10} ({mib(anon)} anonymous, {mib(file)} file-backed)")
anchor = rows["prometheus"][0] + rows["alertmanager"][0]
print(f"  prometheus + alertmanager {mib(anchor)}; purser is {rows['purser'][0] / anchor:.2f} of it")
PY
