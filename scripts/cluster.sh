#!/usr/bin/env bash
# The production topology of GPS on one machine, each role its own process:
#
#   3 nats-server nodes   the cluster config of nats/config/cluster (JetStream,
#                         sync_interval: always, route and user passwords, TLS
#                         for clients with a CA of this cluster's own, made
#                         with openssl into $GPS_CLUSTER_DIR/tls), GPS_EVENTS
#                         with 3 replicas
#   2 gateways            `gps gateway` on two ports (a load balancer's pool)
#   2 projectors          `gps projector`: one active per projection, the other waiting
#   2 agents              `gps agent`: compute agent, delivery worker and
#                         process managers, on shared durable consumers (the
#                         delivery worker has no process of its own yet)
#   Postgres              the machine's server (127.0.0.1:5432, or GPS_CLUSTER_POSTGRES)
#   object storage        GPS_S3_ENDPOINT when set, else each role's embedded
#                         S3 endpoint over one shared folder
#
#   scripts/cluster.sh up              start what is not running (builds gps first)
#   scripts/cluster.sh status          each process, each node's and gateway's health
#   scripts/cluster.sh down            stop everything, keep the data
#   scripts/cluster.sh down --purge    stop everything, delete the data and the databases
#   scripts/cluster.sh stop|kill NAME  stop one process with SIGTERM or SIGKILL,
#                                      e.g. `kill nats-2`, `stop projector-1`
#   scripts/cluster.sh start NAME      start it again and wait until it works (a
#                                      NATS node: until it has caught up)
#
# Settings (environment; the ports and secrets of the first `up` are kept in
# $GPS_CLUSTER_DIR/cluster.env and reused):
#   GPS_CLUSTER_DIR             where everything lives (default: .gps/cluster)
#   GPS_BIN                     the gps binary (default: `cargo build`, then target/debug/gps;
#                               GPS_CLUSTER_PROFILE=release builds and runs the release binary)
#   GPS_NATS_SERVER             the nats-server (default: the pinned one scripts/install-tools.sh installs)
#   GPS_CLUSTER_POSTGRES        the Postgres server (default postgres://postgres@127.0.0.1:5432)
#   GPS_CLUSTER_DATABASE        database stem (default gps_cluster: gps_cluster_read,
#                               gps_cluster_compute, gps_cluster_credentials)
#   GPS_CLUSTER_NATS_PORTS      client ports of the nodes (default "4441 4442 4443")
#   GPS_CLUSTER_ROUTE_PORTS     route ports (default "6441 6442 6443")
#   GPS_CLUSTER_MONITOR_PORTS   monitoring ports, loopback (default "8441 8442 8443")
#   GPS_CLUSTER_GATEWAY_PORTS   gateway ports (default "8081 8082")
#   GPS_S3_*                    a real S3 endpoint for every role (docs/configuration.md)
#
# docs/operations.md ("The production topology") says how this maps to several machines.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${GPS_CLUSTER_DIR:-$repo/.gps/cluster}
NATS_NODES=(nats-1 nats-2 nats-3)
GATEWAYS=(gateway-a gateway-b)
PROJECTORS=(projector-1 projector-2)
AGENTS=(agent-1 agent-2)
# Every user of nats/config/accounts.conf, each with its own password.
NATS_USERS=(ADMIN GATEWAY AGENT PROJECTOR AUDITOR DOWNSTREAM_ACME SYS)
STOP_WAIT_SECS=20
# Settings of the caller's shell that would point a role elsewhere.
UNSET_ENV=(-u GPS_CONFIG -u GPS_COMPUTE_DATABASE_URL -u GPS_CREDENTIALS_DATABASE_URL -u GPS_HTTP_ADDR -u GPS_PORT)
# The node each role connects to first (it learns the others from the cluster):
# the roles are spread over the three nodes.
declare -A SEED=([gateway-a]=0 [gateway-b]=1 [projector-1]=2 [projector-2]=0 [agent-1]=1 [agent-2]=2)

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}
say() { echo "cluster.sh: $*"; }

# A secret the nats-server reads as a string: letters and digits, starting with a letter.
secret() { echo "p$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; }
hex32() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# The settings of this cluster: generated on the first `up`, then reused, so
# a restart finds its store, its databases and its passwords again.
load_env() {
  if [ ! -f "$dir/cluster.env" ]; then
    [ "${1:-}" = create ] || die "no cluster in $dir (run: scripts/cluster.sh up)"
    mkdir -p "$dir"
    (
      umask 077
      {
        echo "# Written by scripts/cluster.sh on its first up; secrets: keep this file private."
        echo "CLUSTER_POSTGRES='${GPS_CLUSTER_POSTGRES:-postgres://postgres@127.0.0.1:5432}'"
        echo "CLUSTER_DATABASE='${GPS_CLUSTER_DATABASE:-gps_cluster}'"
        echo "CLUSTER_NATS_PORTS='${GPS_CLUSTER_NATS_PORTS:-4441 4442 4443}'"
        echo "CLUSTER_ROUTE_PORTS='${GPS_CLUSTER_ROUTE_PORTS:-6441 6442 6443}'"
        echo "CLUSTER_MONITOR_PORTS='${GPS_CLUSTER_MONITOR_PORTS:-8441 8442 8443}'"
        echo "CLUSTER_GATEWAY_PORTS='${GPS_CLUSTER_GATEWAY_PORTS:-8081 8082}'"
        for user in "${NATS_USERS[@]}" ROUTE; do
          echo "GPS_NATS_${user}_PASSWORD=$(secret)"
        done
        echo "GPS_CDN_SIGNING_KEY=$(hex32)"
        echo "GPS_SECRETS_KEY=$(hex32)"
        echo "OWNER_PASSWORD=$(secret)"
      } >"$dir/cluster.env"
    )
  fi
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  read -r -a nats_ports <<<"$CLUSTER_NATS_PORTS"
  read -r -a route_ports <<<"$CLUSTER_ROUTE_PORTS"
  read -r -a monitor_ports <<<"$CLUSTER_MONITOR_PORTS"
  read -r -a gateway_ports <<<"$CLUSTER_GATEWAY_PORTS"
  if [ "${#nats_ports[@]}" -ne 3 ] || [ "${#route_ports[@]}" -ne 3 ] || [ "${#monitor_ports[@]}" -ne 3 ]; then
    die "three NATS, route and monitoring ports are needed (see $dir/cluster.env)"
  fi
  [ "${#gateway_ports[@]}" -eq 2 ] || die "two gateway ports are needed (see $dir/cluster.env)"
  database_url="$CLUSTER_POSTGRES/${CLUSTER_DATABASE}_read"
}

nats_server() {
  local binary=${GPS_NATS_SERVER:-${GPS_TOOLS_DIR:-$HOME/.cache/gps/tools}/nats-2.15.1/bin/nats-server}
  if [ -z "${GPS_NATS_SERVER:-}" ]; then
    "$repo/scripts/install-tools.sh"
  fi
  [ -x "$binary" ] || die "no nats-server at $binary (scripts/install-tools.sh installs it; or set GPS_NATS_SERVER)"
  echo "$binary"
}

gps_binary() {
  if [ -n "${GPS_BIN:-}" ]; then
    [ -x "$GPS_BIN" ] || die "GPS_BIN=$GPS_BIN is not an executable"
    echo "$GPS_BIN"
    return
  fi
  local profile=debug flags=()
  if [ "${GPS_CLUSTER_PROFILE:-}" = release ]; then
    profile=release flags=(--release)
  fi
  (cd "$repo" && cargo build --quiet --bin gps "${flags[@]}") >&2 || die "cargo build failed"
  local target
  target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  echo "$target/$profile/gps"
}

pid_file() { echo "$dir/run/$1.pid"; }
log_file() { echo "$dir/logs/$1.log"; }

# The pid of process NAME when it is running and is ours: every process gets
# GPS_CLUSTER_PROCESS=<dir>:<name> in its environment, so a recycled pid is
# never mistaken for it.
running_pid() {
  local name=$1 file pid
  file=$(pid_file "$name")
  [ -f "$file" ] || return 1
  pid=$(<"$file")
  is_ours "$pid" "$name" || return 1
  echo "$pid"
}

is_ours() { # pid name
  local environ
  environ=$(tr '\0' '\n' 2>/dev/null <"/proc/$1/environ") || return 1
  [[ $'\n'$environ$'\n' == *$'\n'"GPS_CLUSTER_PROCESS=$dir:$2"$'\n'* ]]
}

# Starts NAME in its own session (so a terminal's Ctrl-C does not reach it),
# appending to its log file.
launch() { # name command...
  local name=$1
  shift
  mkdir -p "$dir/run" "$dir/logs"
  echo "---- $(date -u +%FT%TZ) start" >>"$(log_file "$name")"
  GPS_CLUSTER_PROCESS="$dir:$name" setsid "$@" </dev/null >>"$(log_file "$name")" 2>&1 &
  local pid=$!
  echo "$pid" >"$(pid_file "$name")"
  # Until the forked shell has exec'd, its environment is still this
  # script's, without the marker: wait for the exec (or the end) so the next
  # check does not take a slow start for an exit.
  local deadline=$((SECONDS + 10))
  while ! is_ours "$pid" "$name" && kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.05
  done
}

# Fails with the end of NAME's log when it is no longer running.
check_alive() {
  local name=$1
  if ! running_pid "$name" >/dev/null; then
    echo "cluster.sh: $name exited; the end of $(log_file "$name"):" >&2
    tail -n 30 "$(log_file "$name")" >&2
    exit 1
  fi
}

# Waits until `probe` succeeds, while NAME keeps running.
wait_for() { # name seconds what probe...
  local name=$1 seconds=$2 what=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    check_alive "$name"
    [ "$SECONDS" -lt "$deadline" ] || die "$name: $what not within ${seconds}s (log: $(log_file "$name"))"
    sleep 0.2
  done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }
# Whether NAME's log says TEXT since its last start. (No `grep -q` at the end
# of a pipe here: it exits at the first match, and with pipefail the writer's
# SIGPIPE would fail the check.)
log_has() {
  awk -v text="$2" '/^---- .* start$/ { found = 0 } index($0, text) { found = 1 } END { exit !found }' \
    "$(log_file "$1")"
}

# Replaces FROM by TO in FILE; FROM must occur exactly once, so a changed
# production config stops here instead of running with its own ports.
rewrite_once() { # file from to
  local file=$1 from=$2 to=$3 text
  [ "$(grep -cF -- "$from" "$file")" -eq 1 ] || die "$file: expected \"$from\" exactly once"
  text=$(<"$file")
  printf '%s\n' "${text//"$from"/"$to"}" >"$file"
}

# The node's configuration: a copy of nats/config with only the ports (all
# on loopback) and the store path changed.
node_config() { # n (0-based)
  local n=$1 node=$dir/nats/node-$(($1 + 1))
  rm -rf "$node/config"
  mkdir -p "$node/store"
  cp -R "$repo/nats/config" "$node/config"
  local shared=$node/config/cluster/cluster.conf
  rewrite_once "$shared" "listen: 0.0.0.0:4222" "listen: 127.0.0.1:${nats_ports[$n]}"
  rewrite_once "$shared" "http: 127.0.0.1:8222" "http: 127.0.0.1:${monitor_ports[$n]}"
  rewrite_once "$shared" "listen: 0.0.0.0:6222" "listen: 127.0.0.1:${route_ports[$n]}"
  rewrite_once "$shared" '"/var/lib/gps/nats"' "\"$node/store\""
  echo "$node/config/cluster/node-$(($1 + 1)).conf"
}

nats_env() {
  local routes=() port
  for port in "${route_ports[@]}"; do
    routes+=("nats-route://route:$GPS_NATS_ROUTE_PASSWORD@127.0.0.1:$port")
  done
  local joined
  joined=$(printf ', %s' "${routes[@]}")
  echo "GPS_NATS_ROUTES=[${joined:2}]"
  for user in "${NATS_USERS[@]}" ROUTE; do
    local variable="GPS_NATS_${user}_PASSWORD"
    echo "$variable=${!variable}"
  done
  echo "GPS_NATS_TLS_CERT_FILE=$dir/tls/server.pem"
  echo "GPS_NATS_TLS_KEY_FILE=$dir/tls/server-key.pem"
}

start_nats_node() { # n
  local n=$1 name=${NATS_NODES[$1]} config environment=()
  config=$(node_config "$n")
  mapfile -t environment < <(nats_env)
  launch "$name" env "${environment[@]}" "$NATS_SERVER" -c "$config"
}

# The node a role connects to first: its own (roles are spread over the
# nodes), else the first one running. A role is given one URL and learns the
# others from the cluster, so it must be a live one.
seed_of() { # name
  local seed=${SEED[$1]:-0} n
  if running_pid "${NATS_NODES[$seed]}" >/dev/null; then
    echo "$seed"
    return
  fi
  for n in 0 1 2; do
    if running_pid "${NATS_NODES[$n]}" >/dev/null; then
      echo "$n"
      return
    fi
  done
  echo "$seed"
}

# What every gps role shares: the cluster, the databases, the keys, the
# shared data folder (embedded object store, C2PA development certificate).
role_env() { # name nats-user
  local name=$1 user=$2
  local password_variable="GPS_NATS_${user^^}_PASSWORD"
  # Its own node first, then the others: it starts and reconnects while a node is down.
  local first node urls
  first=$(seed_of "$name")
  urls="tls://127.0.0.1:${nats_ports[$first]}"
  for node in 0 1 2; do
    [[ $node == "$first" ]] || urls+=",tls://127.0.0.1:${nats_ports[$node]}"
  done
  echo "NATS_URL=$urls"
  echo "GPS_NATS_CA_FILE=$dir/tls/ca.pem"
  echo "NATS_USER=$user"
  echo "NATS_PASSWORD=${!password_variable}"
  echo "GPS_NATS_REPLICAS=3"
  echo "NO_COLOR=1"
  echo "DATABASE_URL=$database_url"
  echo "PGAPPNAME=gps-$name"
  echo "GPS_DATA_DIR=$dir/data"
  echo "GPS_CDN_SIGNING_KEY=$GPS_CDN_SIGNING_KEY"
  echo "GPS_SECRETS_KEY=$GPS_SECRETS_KEY"
  echo "GPS_SEED_DEMO=false"
  echo "GPS_AGENT_NAME=$name"
  echo "GPS_DELIVERY_NAME=delivery-$name"
  # Webhook receivers fetch renditions through a gateway (a load balancer in production).
  echo "GPS_PUBLIC_BASE_URL=${GPS_PUBLIC_BASE_URL:-}"
}

run_gps() { # name nats-user args...
  local name=$1 user=$2 environment=()
  shift 2
  mapfile -t environment < <(role_env "$name" "$user")
  env "${UNSET_ENV[@]}" "${environment[@]}" "$GPS" "$@"
}

launch_gps() { # name nats-user args...
  local name=$1 user=$2 environment=()
  shift 2
  mapfile -t environment < <(role_env "$name" "$user")
  launch "$name" env "${UNSET_ENV[@]}" "${environment[@]}" "$GPS" "$@"
}

cluster_formed() {
  local port
  for port in "${monitor_ports[@]}"; do
    [[ $(curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz") == *'"ok"'* ]] || return 1
  done
}

postgres_url() { echo "$CLUSTER_POSTGRES/${1:-postgres}"; }

# Starts one process unless it runs, and waits until it works.
start_process() { # name
  local name=$1
  if running_pid "$name" >/dev/null; then return 0; fi
  case $name in
    nats-*)
      local n=$((${name#nats-} - 1))
      start_nats_node "$n"
      wait_for "$name" 30 "listening" http_ok "http://127.0.0.1:${monitor_ports[$n]}/varz"
      ;;
    projector-*)
      launch_gps "$name" projector projector
      wait_for "$name" 60 "running" log_has "$name" "projector running"
      ;;
    gateway-*)
      local port=${gateway_ports[0]}
      if [ "$name" = gateway-b ]; then port=${gateway_ports[1]}; fi
      launch_gps "$name" gateway gateway --port "$port"
      wait_for "$name" 120 "/healthz" http_ok "http://127.0.0.1:$port/healthz"
      ;;
    agent-*)
      GPS_PUBLIC_BASE_URL=${GPS_PUBLIC_BASE_URL:-http://127.0.0.1:${gateway_ports[0]}} \
        launch_gps "$name" agent agent
      wait_for "$name" 60 "consuming" log_has "$name" "consuming generation events"
      ;;
  esac
}

# The client TLS files of the nodes: a CA of this cluster's own and a
# certificate for 127.0.0.1 and localhost signed by it, made once (production
# brings its own; nats/config/README.md). The roles trust the CA.
tls_files() {
  [ -f "$dir/tls/server.pem" ] && return 0
  command -v openssl >/dev/null || die "openssl is needed to make the cluster's TLS certificate (apt-get install openssl)"
  (
    umask 077
    mkdir -p "$dir/tls"
    cd "$dir/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
      -subj "/CN=GPS local cluster CA" -keyout ca-key.pem -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=gps-nats" \
      -keyout server-key.pem -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 398 \
      -extfile san.cnf -out server.pem 2>/dev/null
  ) || die "making the cluster's TLS certificate in $dir/tls failed"
}

# The binaries and Postgres, checked before anything starts.
prepare() {
  command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
  tls_files
  NATS_SERVER=$(nats_server)
  GPS=$(gps_binary)
  [ -x "$GPS" ] || die "no gps binary at $GPS"
  mkdir -p "$dir/run"
  echo "$GPS" >"$dir/run/gps-binary"
  if command -v psql >/dev/null; then
    psql "$(postgres_url)" -Atqc 'SELECT 1' >/dev/null 2>&1 \
      || die "Postgres does not answer at $CLUSTER_POSTGRES (the README's set-up: PostgreSQL on 127.0.0.1:5432)"
  fi
}

cmd_up() {
  load_env create
  local name built=$SECONDS
  prepare
  local started=$SECONDS
  built=$((started - built))
  for name in "${NATS_NODES[@]}"; do start_process "$name"; done
  wait_for nats-1 60 "a JetStream cluster of three (meta leader elected)" cluster_formed
  say "NATS cluster formed: ${nats_ports[*]} ($((SECONDS - started))s)"

  # The admin creates the streams with 3 replicas; no other role may change them.
  local deadline=$((SECONDS + 60))
  until run_gps provision admin log provision >"$dir/logs/provision.log" 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { cat "$dir/logs/provision.log" >&2; die "gps log provision failed"; }
    sleep 1
  done
  sed -n -E 's/^(drift|configuration)/cluster.sh: GPS_EVENTS: &/p' "$dir/logs/provision.log"

  # Projectors before the first account: who can sign in is a read model.
  for name in "${PROJECTORS[@]}"; do start_process "$name"; done

  # One owner account and brand, once (gps up's demo seeding is off here);
  # the owner is a platform admin, so it may create further brands.
  if [ ! -f "$dir/owner-credentials.txt" ]; then
    GPS_ADMIN_PASSWORD=$OWNER_PASSWORD run_gps admin gateway \
      admin create-user --email owner@cluster.local --name "Cluster owner" --id owner --brand demo --role owner \
      --platform-admin \
      >"$dir/logs/admin.log" 2>&1 || { cat "$dir/logs/admin.log" >&2; die "creating the owner failed"; }
    (umask 077 && printf 'email: owner@cluster.local\npassword: %s\n' "$OWNER_PASSWORD" >"$dir/owner-credentials.txt")
  fi

  for name in "${GATEWAYS[@]}"; do start_process "$name"; done
  # One after the other: the first generates the shared development C2PA certificate.
  for name in "${AGENTS[@]}"; do start_process "$name"; done
  local port
  for port in "${gateway_ports[@]}"; do
    wait_for gateway-a 60 "/readyz of 127.0.0.1:$port" http_ok "http://127.0.0.1:$port/readyz"
  done
  say "up in $((SECONDS - started))s (after ${built}s of build and checks): gateways http://127.0.0.1:${gateway_ports[0]} and http://127.0.0.1:${gateway_ports[1]}"
  say "sign in as owner of brand demo: $dir/owner-credentials.txt; logs in $dir/logs; scripts/cluster.sh status"
}

# One line per process: name, pid or "down", and what it answers.
cmd_status() {
  load_env
  local any_down=0 n i name pid detail
  printf '%-12s %-8s %s\n' process pid state
  for n in 0 1 2; do
    name=${NATS_NODES[$n]}
    if pid=$(running_pid "$name"); then
      detail="client 127.0.0.1:${nats_ports[$n]}, healthz: $(curl -sS --max-time 2 "http://127.0.0.1:${monitor_ports[$n]}/healthz" 2>&1 | tr -d '\n')"
    else
      pid=down detail="" any_down=1
    fi
    printf '%-12s %-8s %s\n' "$name" "$pid" "$detail"
  done
  for i in 0 1; do
    name=${GATEWAYS[$i]}
    if pid=$(running_pid "$name"); then
      detail="http://127.0.0.1:${gateway_ports[$i]} readyz: $(curl -sS --max-time 5 "http://127.0.0.1:${gateway_ports[$i]}/readyz" 2>&1 | tr -d '\n')"
    else
      pid=down detail="" any_down=1
    fi
    printf '%-12s %-8s %s\n' "$name" "$pid" "$detail"
  done
  for name in "${PROJECTORS[@]}" "${AGENTS[@]}"; do
    if pid=$(running_pid "$name"); then
      detail="no HTTP port; connected to $(connections_of "$pid")"
    else
      pid=down detail="" any_down=1
    fi
    printf '%-12s %-8s %s\n' "$name" "$pid" "$detail"
  done

  echo
  echo "stream GPS_EVENTS (from the nodes' monitoring):"
  stream_report || echo "  (no node answered)"
  echo
  if command -v psql >/dev/null; then
    echo "projection runners (Postgres advisory locks of ${CLUSTER_DATABASE}_read: who is active):"
    projection_locks || echo "  (Postgres did not answer)"
  else
    echo "(psql not found: the active projector per projection is not shown)"
  fi
  echo
  # The roles' own reports, through a live node (a role connects to one URL
  # and learns the others from it).
  local live=""
  for n in 0 1 2; do
    if running_pid "${NATS_NODES[$n]}" >/dev/null; then live=$n && break; fi
  done
  if [ -n "$live" ]; then
    GPS=$(cat "$dir/run/gps-binary" 2>/dev/null || true)
    [ -x "$GPS" ] || GPS=$(gps_binary)
    echo "read models (gps projections status):"
    run_gps status projector projections status 2>/dev/null | sed 's/^/  /' || echo "  (failed)"
    echo "compute queue (gps agent --status): $(run_gps status agent agent --status 2>/dev/null || echo failed)"
  fi
  echo "object storage: ${GPS_S3_ENDPOINT:-embedded endpoint in each role over $dir/data/objects}"
  return "$any_down"
}

# Where a process's TCP connections go (NATS nodes, Postgres), from `ss`: for
# the roles without an HTTP port, the sign that they are attached.
connections_of() { # pid
  command -v ss >/dev/null || { echo "(ss not found)"; return; }
  local peers n count postgres_port=${CLUSTER_POSTGRES##*:} out=""
  postgres_port=${postgres_port%%/*}
  peers=$(ss -Htnp state established 2>/dev/null | awk -v pid="pid=$1," 'index($0, pid) { print $4 }')
  for n in 0 1 2; do
    count=$(grep -cx "127.0.0.1:${nats_ports[$n]}" <<<"$peers" || true)
    if [ "$count" -gt 0 ]; then out+="${NATS_NODES[$n]}, "; fi
  done
  count=$(grep -c ":$postgres_port\$" <<<"$peers" || true)
  out+="Postgres ($count connections)"
  echo "$out"
}

# The stream's leader and replicas as the first live node reports them.
stream_report() {
  local n
  for n in 0 1 2; do
    if curl -fsS --max-time 2 "http://127.0.0.1:${monitor_ports[$n]}/jsz?accounts=true&streams=true&config=true" 2>/dev/null \
      | python3 -c '
import json, sys
jsz = json.load(sys.stdin)
for account in jsz.get("account_details") or []:
    for stream in account.get("stream_detail") or []:
        if stream["name"] != "GPS_EVENTS":
            continue
        cluster = stream.get("cluster") or {}
        peers = ", ".join(
            "%s %s" % (peer["name"], "current" if peer.get("current") else "not current")
            for peer in cluster.get("replicas") or [])
        state = stream.get("state") or {}
        print("  replicas %s, leader %s; the other peers as %s sees them: %s" % (
            stream["config"]["num_replicas"], cluster.get("leader"), sys.argv[1], peers or "none"))
        print("  messages %s, last sequence %s" % (state.get("messages"), state.get("last_seq")))
        sys.exit(0)
sys.exit(1)' "gps-${NATS_NODES[$n]}" 2>/dev/null; then
      return 0
    fi
  done
  return 1
}

projection_locks() {
  psql "$(postgres_url "${CLUSTER_DATABASE}_read")" -Atq -F ' ' -c "
    WITH projection(name) AS (VALUES ('accounts'), ('activity'), ('brands'), ('catalog'), ('delivery'), ('production'), ('review')),
         wanted AS (SELECT name, hashtextextended('gps-projection-runner:' || name, 0) AS key FROM projection)
    SELECT '  ' || rpad(w.name, 12) || coalesce(a.application_name, '(no active runner)')
    FROM wanted w
    LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid::bigint = ((w.key >> 32) & 4294967295) AND l.objid::bigint = (w.key & 4294967295)
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    ORDER BY w.name" 2>/dev/null
}

stop_process() { # name signal
  local name=$1 signal=$2 pid
  pid=$(running_pid "$name") || return 0
  kill "-$signal" "$pid" 2>/dev/null || true
  echo "$pid"
}

# Waits until none of the pids is ours any more; SIGKILL after STOP_WAIT_SECS.
wait_gone() { # name:pid...
  local deadline=$((SECONDS + STOP_WAIT_SECS)) entry left
  while :; do
    left=()
    for entry in "$@"; do
      if is_ours "${entry#*:}" "${entry%%:*}"; then left+=("$entry"); fi
    done
    [ "${#left[@]}" -gt 0 ] || return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      for entry in "${left[@]}"; do
        echo "cluster.sh: ${entry%%:*} did not stop within ${STOP_WAIT_SECS}s; SIGKILL" >&2
        kill -KILL "${entry#*:}" 2>/dev/null || true
      done
      deadline=$((SECONDS + 5))
    fi
    sleep 0.2
  done
}

stop_group() { # names...
  local name pid stopping=()
  for name in "$@"; do
    pid=$(stop_process "$name" TERM)
    if [ -n "$pid" ]; then stopping+=("$name:$pid"); fi
  done
  if [ "${#stopping[@]}" -gt 0 ]; then wait_gone "${stopping[@]}"; fi
  for name in "$@"; do rm -f "$(pid_file "$name")"; done
}

# Every process whose environment names this cluster, pid files or not.
strays() {
  local environ pid
  for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}
    pid=${pid%/environ}
    environ=$(tr '\0' '\n' 2>/dev/null <"$environ") || continue
    if [[ $'\n'$environ == *$'\n'"GPS_CLUSTER_PROCESS=$dir:"* ]]; then echo "$pid"; fi
  done
}

cmd_down() {
  [ -d "$dir" ] || { say "nothing in $dir"; return 0; }
  # Writers and readers first, the log last.
  stop_group "${AGENTS[@]}" "${GATEWAYS[@]}"
  stop_group "${PROJECTORS[@]}"
  stop_group "${NATS_NODES[@]}"
  local pid left
  left=$(strays)
  for pid in $left; do
    echo "cluster.sh: stray process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)); SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done
  say "stopped"
  if [ "${1:-}" = --purge ]; then
    local dropped="" database
    if [ -f "$dir/cluster.env" ]; then
      load_env
      if command -v psql >/dev/null; then
        for database in read compute credentials; do
          if PGOPTIONS=--client-min-messages=warning psql "$(postgres_url)" -Atqc \
            "DROP DATABASE IF EXISTS ${CLUSTER_DATABASE}_$database WITH (FORCE)" >/dev/null; then
            dropped+=" ${CLUSTER_DATABASE}_$database"
          else
            echo "cluster.sh: could not drop ${CLUSTER_DATABASE}_$database" >&2
          fi
        done
      else
        echo "cluster.sh: psql not found; drop the databases ${CLUSTER_DATABASE}_{read,compute,credentials} yourself" >&2
      fi
    fi
    rm -rf "$dir"
    say "deleted $dir${dropped:+ and the databases$dropped}"
  fi
}

process_names() { echo "${NATS_NODES[*]} ${GATEWAYS[*]} ${PROJECTORS[*]} ${AGENTS[*]}"; }

cmd_one() { # stop|kill|start name
  local action=$1 name=${2:-}
  [[ " $(process_names) " == *" $name "* ]] || die "no process called '$name'; one of: $(process_names)"
  load_env
  case $action in
    stop) stop_group "$name" ;;
    kill)
      local pid
      pid=$(stop_process "$name" KILL)
      [ -z "$pid" ] || wait_gone "$name:$pid"
      rm -f "$(pid_file "$name")"
      ;;
    start)
      if running_pid "$name" >/dev/null; then die "$name is running"; fi
      prepare
      start_process "$name"
      if [[ $name == nats-* ]]; then
        local n=$((${name#nats-} - 1))
        wait_for "$name" 60 "catching up (/healthz ok)" \
          http_ok "http://127.0.0.1:${monitor_ports[$n]}/healthz"
      fi
      say "$name started"
      ;;
  esac
}

case "${1:-}" in
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down "${2:-}" ;;
  stop | kill | start) cmd_one "$1" "${2:-}" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
