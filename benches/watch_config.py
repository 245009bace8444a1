#!/usr/bin/env python3
"""Writes a watch for the benchmarks into DIR: purser.toml (SQLite, console
output, /metrics on PORT) and scenario.toml (ACCOUNTS simulated accounts with
RESOURCES prepaid resources each, balances and expiries spread out).

    benches/watch_config.py DIR ACCOUNTS RESOURCES PORT SCHEDULE
"""
import sys

work, n, r, port, schedule = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
config = [f'[store]\npath = "bench.db"\n[scheduler]\nschedule = "{schedule}"\njitter = "0s"\n'
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
