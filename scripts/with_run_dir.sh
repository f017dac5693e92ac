#!/usr/bin/env bash
# Run a command with a private TMPDIR (all throwaway clusters live under it) and stop every server
# started under it when the command ends: success, failure or Ctrl-C. Removes the directory after.
set -u
cd "$(dirname "$0")/.."
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/dataeng-run.XXXXXX")
chmod 755 "$run_dir"   # PostgreSQL runs as the postgres user and must reach its data dirs
cleanup() {
  scripts/stop_servers.sh "$run_dir/"
  rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
TMPDIR="$run_dir" "$@"
