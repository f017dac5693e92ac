#!/usr/bin/env bash
# Stop the PostgreSQL / pg_auto_failover processes whose data directories lie under ROOT, and the Airflow
# processes (devstack.airflow_stack components and their tasks) whose AIRFLOW_HOME lies under it.
#   scripts/stop_servers.sh ROOT     what one `make demo` / `make test` run started (its private TMPDIR)
#   scripts/stop_servers.sh          everything any run of this repo left (data dirs /tmp/dataeng-*)
# Safe to run any time; the make targets call it from an EXIT trap.
set -u
pattern=${1:-${TMPDIR:-/tmp}/dataeng-}
[[ -n "$pattern" ]] || exit 0

pids() { pgrep -f -- "($1).*${pattern}" 2>/dev/null || true; }

# Airflow components and task processes: found by AIRFLOW_HOME in their environment.
airflow_pids() {
  local env pid
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}; pid=${pid%/environ}
    [[ $pid == "$$" || $pid == "$PPID" ]] && continue
    { tr '\0' '\n' < "$env"; } 2>/dev/null \
      | awk -v want="AIRFLOW_HOME=${pattern}" 'index($0, want) == 1 { found = 1 } END { exit !found }' \
      && echo "$pid"
  done
}
for pid in $(airflow_pids); do
  kill -TERM "$pid" 2>/dev/null || true
done

for pid in $(pids 'dbt[.]warm_worker'); do  # warm dbt workers (their socket lies under ROOT)
  kill -TERM "$pid" 2>/dev/null || true
done
for pid in $(pids pg_autoctl); do
  kill -TERM "$pid" 2>/dev/null || true
done
for pidfile in $(find "$(dirname "$pattern")" -maxdepth 5 -name postmaster.pid -path "${pattern}*" 2>/dev/null); do
  pid=$(head -n1 "$pidfile" 2>/dev/null) && kill -INT "$pid" 2>/dev/null || true
done
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [[ -z "$(pids 'postgres|pg_autoctl')$(airflow_pids)" ]] && break
  sleep 0.5
done
for pid in $(pids 'postgres|pg_autoctl') $(airflow_pids); do
  kill -KILL "$pid" 2>/dev/null || true
done
exit 0
