#!/usr/bin/env bash
# Stop every PostgreSQL / pg_auto_failover process this repo's scripts started (data dirs under the
# system temp dir with the dataeng- prefix). Safe to run any time; used as an EXIT trap by make targets.
set -u
tmp=${TMPDIR:-/tmp}
for pid in $(pgrep -f "pg_autoctl.*${tmp}/dataeng-" 2>/dev/null); do
  kill -TERM -- "-$(ps -o pgid= "$pid" | tr -d ' ')" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
done
for pidfile in "$tmp"/dataeng-*/*/postmaster.pid "$tmp"/dataeng-*/postmaster.pid; do
  [[ -f "$pidfile" ]] || continue
  pid=$(head -n1 "$pidfile")
  kill -INT "$pid" 2>/dev/null || true
done
sleep 1
for pid in $(pgrep -f "(postgres|pg_autoctl).*${tmp}/dataeng-" 2>/dev/null); do
  kill -KILL "$pid" 2>/dev/null || true
done
exit 0
