#!/usr/bin/env bash
# Make sure PostgreSQL 15, pg_auto_failover and PgBouncer are installed (Debian/Ubuntu). Installs them when
# running as root; otherwise says how. Never leaves a server running (no default cluster is created
# and package scripts may not start services).
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
missing=()
[[ -x "$PG_BIN/initdb" && -x "$PG_BIN/postgres" ]] || missing+=(postgresql-15)
[[ -d /usr/lib/postgresql/15/lib ]] && ls /usr/lib/postgresql/15/lib/pgautofailover.so >/dev/null 2>&1 \
  || missing+=(postgresql-15-auto-failover)
command -v pg_autoctl >/dev/null 2>&1 || missing+=(pg-auto-failover-cli)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client-15)
# Headless Chromium for the dashboard's browser tests (Playwright drives it via executable_path).
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
# PgBouncer for tests/test_pgbouncer.py (session pooling works, transaction pooling is refused).
command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "==> PostgreSQL 15, pg_auto_failover, chromium and pgbouncer are installed"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  cat >&2 <<MSG
error: missing Debian packages: ${missing[*]}
Install them as root, then run this command again:
  sudo apt-get update && sudo apt-get install -y ${missing[*]}
MSG
  exit 1
fi

echo "==> installing Debian packages: ${missing[*]}"
# No default cluster, and no service starts from package scripts.
mkdir -p /etc/postgresql-common
if ! grep -qs '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf; then
  echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
fi
policy=/usr/sbin/policy-rc.d
policy_created=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy && policy_created=1
fi
trap '[[ $policy_created -eq 1 ]] && rm -f $policy' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "==> installed: ${missing[*]}"
