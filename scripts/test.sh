#!/usr/bin/env bash
# Runs every test of the workspace against real services started by the tests
# themselves (each integration test starts its own pinned nats-server).
# Fails when any test fails, and when no test ran at all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-tools.sh --old-nats

log=$(mktemp)
trap 'rm -f "$log"' EXIT

status=0
cargo test --workspace --all-targets 2>&1 | tee "$log" || status=$?

passed=$(grep -E '^test result: ' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result: ' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')

if [ "$status" -ne 0 ]; then
  echo "cargo test failed (exit $status)" >&2
  echo "tests: $passed passed, $failed failed"
  exit "$status"
fi
if [ "$passed" -eq 0 ]; then
  echo "error: no tests ran" >&2
  echo "tests: 0 passed, 0 failed"
  exit 1
fi
echo "tests: $passed passed, $failed failed"

# The API contract: the OpenAPI document validates, and a property-based run
# driven by it against a fresh `gps up` finds nothing (a fixed time budget).
scripts/api-contract.sh
