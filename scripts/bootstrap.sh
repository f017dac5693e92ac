#!/usr/bin/env bash
# Create .venv at the repo root and install the package with the locked versions (idempotent).
#   scripts/bootstrap.sh            runtime + dev extras (tests, ruff)
#   scripts/bootstrap.sh bench      a separate .venv-bench with the bench extra (dag-factory, cosmos)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
if ! command -v "$PY" >/dev/null 2>&1; then
  PY=python3
  "$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 10)' 2>/dev/null || {
    echo "error: Python 3.11 is required (python3.11 not found on PATH)" >&2; exit 1; }
fi

venv=.venv
extras=dev
if [[ "${1:-}" == "bench" ]]; then venv=.venv-bench; extras=dev,bench; fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "==> creating $venv"
  "$PY" -m venv "$venv"
fi
if [[ ! -x "$venv/bin/uv" ]]; then
  echo "==> installing uv into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check uv
fi

stamp="$venv/.installed-$(cat setup.cfg constraints.txt | sha256sum | cut -c1-16)-$extras"
if [[ ! -f "$stamp" ]]; then
  echo "==> installing airflow-provider-dataeng[$extras] with locked versions (constraints.txt)"
  "$venv/bin/uv" pip install -q -p "$venv/bin/python" -c constraints.txt -e ".[$extras]"
  # PYTHONDONTWRITEBYTECODE may be set: byte-compile once so fresh processes import fast.
  "$venv/bin/python" -m compileall -q -j 0 "$venv/lib" >/dev/null 2>&1 || true
  rm -f "$venv"/.installed-*
  touch "$stamp"
else
  echo "==> $venv is up to date"
fi

# The development stack (devstack/) is not part of the distribution; benchmarks and tools run by this
# venv's python import it from the repository root, which this .pth entry puts on sys.path (what an
# editable install does for the package itself). Written every time: the checkout may have moved.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD" > "$site/_dataeng_repo_root.pth"
