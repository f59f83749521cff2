#!/usr/bin/env bash
# The API contract stage: the OpenAPI document validates with a standard
# OpenAPI 3.1 validator, and a property-based run driven by the document
# (Schemathesis: examples, coverage, fuzzing and stateful phases, every check)
# against a fresh `gps up` finds nothing: no 5xx, only documented statuses and
# content types, responses that match their schemas, invalid data rejected and
# valid data accepted.
#
# It starts `gps up` on free ports with a temporary data folder (and so its own
# databases, dropped at the end), signs in as the demo brand's owner, registers
# a producer API key, and runs Schemathesis twice within a fixed time budget:
# with the producer key, then with the owner's session (cookie and CSRF token).
# `live` is left out: it is an endless event stream, so every request to it
# would only wait for the request timeout. `ignored_auth` is left out: it
# replaces the scheme it generates (a cookie) while the run's own header (the
# API key) still authenticates, so it reports accepted requests that were
# rightly accepted; refusals of bad credentials are tested in tests/it
# (gateway::requests_without_valid_credentials_*). NUL is not generated: the
# gateway refuses it in every string by design (api_contract tests), which a
# schema cannot say short of a pattern on every string. Security parameters
# are not generated either: a generated bearer token would replace the
# owner's session.
#
# Before the runs it gives the demo brand something of every kind (a shooting
# launched with one look until its predictions exist, an approved prediction
# and its export, a channel preset, a second account as a member, a spare API
# client, an import, people added without an account and so mailed a link to
# choose a password), so that the stateful phase, which follows the
# document's links from each create to its reads and changes, can reach
# every operation. Generated paths name the demo brand nine times in ten and
# a seeded id half the time (Schemathesis dictionaries);
# scripts/api-contract-hooks.py brings positive cases within the rules a
# schema cannot state. Every check gates, ST202 (valid data accepted)
# included. The stateful coverage (operations that answered a 2xx, or the
# 303 of a download, in the stateful phase of either run, over the
# operations tested) is printed from the runs' cassettes.
#
#   GPS_CONTRACT_SECONDS  the whole budget of both runs (default 150)
#   GPS_CONTRACT_SEED     the seed (default: random, printed for reproduction)
#   GPS_CONTRACT_REPORT   where the reports go, JUnit and cassettes (default: a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."

budget=${GPS_CONTRACT_SECONDS:-150}
seed=${GPS_CONTRACT_SEED:-$((RANDOM * 32768 + RANDOM))}
tools="${GPS_TOOLS_DIR:-$HOME/.cache/gps/tools}"

scripts/install-tools.sh --api-contract
contract_tools=$(ls -d "$tools"/api-contract-* | sort | tail -n 1)

echo "== openapi-spec-validator gateway/openapi.json"
if ! output=$("$contract_tools/bin/openapi-spec-validator" gateway/openapi.json 2>&1); then
  # The validator prints the whole document after the error; the start is what matters.
  echo "${output:0:2000}" >&2
  exit 1
fi
echo "$output"

cargo build --quiet --bin gps
gps_binary="${CARGO_TARGET_DIR:-target}/debug/gps"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
data_dir=$(mktemp -d -t gps-contract-XXXXXX)
report_dir=${GPS_CONTRACT_REPORT:-$data_dir/reports}
http_port=$(free_port)
nats_port=$(free_port)
base="http://127.0.0.1:$http_port"
GPS_DATA_DIR="$data_dir" GPS_PORT="$http_port" GPS_NATS_PORT="$nats_port" NATS_URL='' GPS_CONFIG='' \
  "$gps_binary" up >"$data_dir/gps-up.log" 2>&1 &
gps_pid=$!

cleanup() {
  kill -TERM "$gps_pid" 2>/dev/null || true
  wait "$gps_pid" 2>/dev/null || true
  # gps up named the read database of this data folder; the compute one is its sibling.
  if [ -f "$data_dir/read-database" ]; then
    local read_db
    read_db=$(tr -d '[:space:]' <"$data_dir/read-database")
    for db in $(psql -h 127.0.0.1 -U postgres -Atc \
      "SELECT datname FROM pg_database WHERE datname LIKE '${read_db%_read}\\_%'" 2>/dev/null); do
      psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
  fi
  if [ -z "${GPS_CONTRACT_REPORT:-}" ]; then rm -rf "$data_dir"; fi
}
trap cleanup EXIT

for _ in $(seq 1 240); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1 && [ -f "$data_dir/demo-credentials.txt" ]; then break; fi
  if ! kill -0 "$gps_pid" 2>/dev/null; then
    echo "error: gps up ended before it was healthy:" >&2
    tail -n 30 "$data_dir/gps-up.log" >&2
    exit 1
  fi
  sleep 0.5
done
curl -fsS "$base/healthz" >/dev/null || { echo "error: gps up is not healthy after 120 s" >&2; tail -n 30 "$data_dir/gps-up.log" >&2; exit 1; }

credential() { sed -n "s/^$1: //p" "$data_dir/demo-credentials.txt"; }
sign_in=$(python3 -c 'import json, sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' \
  "$(credential email)" "$(credential password)")
signed_in=$(curl -fsS -D "$data_dir/sign-in.headers" -H 'content-type: application/json' -d "$sign_in" "$base/api/v1/session")
cookie=$(sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' "$data_dir/sign-in.headers" | head -n 1)
csrf=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["csrf_token"])' <<<"$signed_in")
key=$(curl -fsS -H 'content-type: application/json' -H "Cookie: $cookie" -H "x-csrf-token: $csrf" \
  -d '{"name": "Contract test", "role": "producer"}' "$base/api/v1/brands/demo/api-clients" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')

api() { # method path [json body]: as the producer key, answering the body
  curl -fsS -X "$1" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    ${3:+-d "$3"} "$base/api/v1/brands/demo$2"
}
# Something to review: a shooting of the demo catalog with one look, launched;
# the compute agent of `gps up` produces its predictions within seconds.
api POST /shootings '{"shooting_id": "contract-seed", "name": "Contract seed", "defaults": {"style": "demo-studio-warm",
  "subject": "demo-ava", "shot_types": ["front"], "output": {"aspect_ratio": "4:5", "long_edge_px": 1024, "format": "jpeg"}}}' >/dev/null
look=$(api POST /shootings/contract-seed/looks '{"look_id": "contract-seed", "name": "Seed look", "products": ["demo-top-terracotta"]}')
sequence=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["stream_sequence"])' <<<"$look")
api POST /shootings/contract-seed/launch "{\"min_sequence\": $sequence}" >/dev/null
for _ in $(seq 1 120); do
  if api GET '/predictions?limit=1' | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["items"] else 1)'; then
    break
  fi
  sleep 0.5
done
api GET '/predictions?limit=1' | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["items"] else 1)' ||
  echo "warning: the seeded shooting has no predictions after 60 s; the stateful phase cannot review any" >&2
# A second account, for the members' operations to add, change and remove.
member_email="member@contract.example"
read_database=$(tr -d '[:space:]' <"$data_dir/read-database")
if GPS_DATA_DIR="$data_dir" GPS_NATS_PORT="$nats_port" NATS_URL='' GPS_CONFIG='' \
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$read_database" \
  GPS_ADMIN_PASSWORD="contract member password" \
  "$gps_binary" admin create-user --email "$member_email" --name "Contract member" >"$data_dir/create-user.log" 2>&1; then
  export GPS_CONTRACT_MEMBER_EMAIL="$member_email" GPS_CONTRACT_MEMBER_PASSWORD="contract member password"
else
  echo "warning: no second account (gps admin create-user failed); add_member cannot succeed:" >&2
  tail -n 5 "$data_dir/create-user.log" >&2
fi
# The owner may create brands (where only platform admins may).
GPS_DATA_DIR="$data_dir" GPS_NATS_PORT="$nats_port" NATS_URL='' GPS_CONFIG='' \
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$read_database" \
  "$gps_binary" admin grant-platform-admin "$(credential email)" >"$data_dir/grant.log" 2>&1 ||
  echo "note: the demo owner is not a platform admin (gps admin grant-platform-admin failed); create_brand answers 403" >&2

as_owner() { # method path [json body]: as the demo owner's session
  curl -fsS -X "$1" -H "Cookie: $cookie" -H "x-csrf-token: $csrf" -H 'content-type: application/json' \
    ${3:+-d "$3"} "$base/api/v1/brands/demo$2"
}
ids() { # JSON list on stdin, field: the field of every item, as TOML strings
  python3 -c 'import json, sys; print(", ".join(json.dumps(i[sys.argv[1]]) for i in json.load(sys.stdin)["items"]))' "$1"
}
# Things of each kind the runs may address by id, besides what they create:
# a reviewable prediction and its generation, an export, a preset, a member,
# a revocable API client and an import.
predictions=$(api GET '/predictions?limit=50' | ids prediction_id) || true
generations=$(api GET '/generations?limit=50' | ids generation_id) || true
first_prediction=$(api GET '/predictions?limit=1' | python3 -c 'import json, sys; print(json.load(sys.stdin)["items"][0]["prediction_id"])') || true
exports=""
# Every prediction of the seeded shooting is approved: reviews in the run
# take some approvals back, and exports need approved ones.
approved=$(api GET '/predictions?limit=50' |
  python3 -c 'import json, sys; print(",".join(i["prediction_id"] for i in json.load(sys.stdin)["items"]))') || true
if [ -n "$first_prediction" ]; then
  for prediction in ${approved//,/ }; do api POST "/predictions/$prediction/approve" >/dev/null || true; done
  exports=$(api POST /exports "{\"export_id\": \"contract-seed\", \"predictions\": [\"$first_prediction\"], \"channel\": \"web-pdp\",
    \"destination\": {\"kind\": \"zip_download\"}}" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["id"]))') || true
fi
as_owner PUT /channel-presets/contract-preset '{"spec": {"long_edge_px": 1024, "aspect_ratio": "4:5", "fit": "pad",
  "background": {"kind": "white"}, "format": "jpeg", "quality": 85, "colour_space": "srgb", "naming_pattern": "{sku}_{n}.jpg"}}' >/dev/null || true
members=""
if [ -n "${GPS_CONTRACT_MEMBER_EMAIL:-}" ]; then
  members=$(as_owner POST /members "{\"email\": \"$member_email\", \"role\": \"viewer\"}" |
    python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["id"]))') || true
fi
clients=$(as_owner POST /api-clients '{"api_client_id": "contract-spare", "name": "Spare", "role": "viewer"}' |
  python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["id"]))') || true
imports=$(curl -fsS -H "Authorization: Bearer $key" -F 'catalog=@-;filename=catalog.csv' "$base/api/v1/brands/demo/imports" \
  <<<$'sku,name,category\nCT-SEED-1,Contract seed,tops' | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["import_id"]))') || true
[ -z "$approved" ] || export GPS_CONTRACT_APPROVED="$approved"
[ -z "$exports" ] || export GPS_CONTRACT_EXPORT="contract-seed"
# A draft shooting with a look, for the look's changes (a launched shooting's
# looks are fixed).
api POST /shootings '{"shooting_id": "contract-draft", "name": "Contract draft", "defaults": {"shot_types": ["front"],
  "output": {"aspect_ratio": "4:5", "long_edge_px": 1024, "format": "jpeg"}}}' >/dev/null || true
api POST /shootings/contract-draft/looks '{"look_id": "contract-draft", "name": "Draft look", "products": ["demo-dress-navy"]}' >/dev/null || true
export GPS_CONTRACT_LOOKS="contract-seed=contract-seed,contract-draft=contract-draft" GPS_CONTRACT_DRAFTS="contract-draft"
# People added without an account, each mailed a link to choose a password
# (gps up's outbox), for the runs' password choices: the key's run adds none.
for n in 1 2 3 4; do
  as_owner POST /members "{\"email\": \"invited-$n@contract.example\", \"role\": \"viewer\"}" >/dev/null ||
    echo "warning: adding invited-$n@contract.example failed; set_password has fewer links to use" >&2
done
# A dictionary needs a value; an id nothing has stands in for a seed that failed.
for seeded in predictions generations exports members clients imports; do
  [ -n "${!seeded}" ] || printf -v "$seeded" '%s' '"none"'
done

mkdir -p "$report_dir"
products=""
for kind in top dress trousers bag; do
  for colour in terracotta navy sage; do products="$products${products:+, }\"demo-$kind-$colour\""; done
done
cat >"$data_dir/schemathesis.toml" <<TOML
# Paths name the demo brand (where the keys and the session work) nine times
# in ten; the tenth is generated, so other brands' 404 and 403 stay tested.
# Ids in paths name things the brand has half the time (the demo catalog and
# what the stage seeded above), so that reads and changes reach them.
[dictionaries]
brands = { values = ["demo"] }
products = { values = [$products] }
subjects = { values = ["demo-ava", "demo-noah"] }
styles = { values = ["demo-studio-warm", "demo-concrete"] }
shootings = { values = ["contract-seed", "contract-draft"] }
looks = { values = ["contract-seed", "contract-draft"] }
predictions = { values = [$predictions] }
generations = { values = [$generations] }
exports = { values = [$exports] }
channels = { values = ["contract-preset", "web-pdp"] }
members = { values = [$members] }
clients = { values = [$clients] }
imports = { values = [$imports] }

[parameters]
"path.brand" = { dictionary = "brands", probability = 0.9 }
"path.product" = { dictionary = "products", probability = 0.5 }
"path.subject" = { dictionary = "subjects", probability = 0.5 }
"path.style" = { dictionary = "styles", probability = 0.5 }
"path.shooting" = { dictionary = "shootings", probability = 0.5 }
"path.look" = { dictionary = "looks", probability = 0.5 }
"path.prediction" = { dictionary = "predictions", probability = 0.5 }
"path.generation" = { dictionary = "generations", probability = 0.5 }
"path.export" = { dictionary = "exports", probability = 0.5 }
"path.channel" = { dictionary = "channels", probability = 0.5 }
"path.member" = { dictionary = "members", probability = 0.5 }
"path.client" = { dictionary = "clients", probability = 0.5 }
"path.import" = { dictionary = "imports", probability = 0.5 }

# The stateful phase follows the document's own links (from every create to
# its reads and changes, from every list to its items), in scenarios long
# enough to go create → list → item → change.
[phases.stateful]
max-steps = 12
inference.algorithms = []

# A member, API client or channel preset the brand does not have, and a
# person who is a member already, are refused with 422 by gps-domain (rules of
# the Brand aggregate), not 404 and 409: for these five operations "it does
# not exist" and "already there" are that 422, as their documents say.
[[operations]]
include-operation-id = ["add_member", "change_role", "remove_member", "revoke_api_client", "remove_channel_preset"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# A set-password token is a secret from a mail: a well-formed one that is
# unknown, used or expired is refused with 400 naming \`token\`.
[[operations]]
include-operation-id = ["set_password"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
TOML
export SCHEMATHESIS_HOOKS="$PWD/scripts/api-contract-hooks.py"
# What the hooks learn (looks' shootings, review states), across invocations.
export GPS_CONTRACT_HOOK_STATE="$data_dir/hook-state.json"
# Where gps up writes its mail: set-password links of the members the runs add.
export GPS_CONTRACT_OUTBOX="$data_dir/outbox"
# Half each: the owner's session reaches what only owners do (members, keys,
# presets, brands), the key the refusals of the rest.
key_seconds=$((budget / 2))
session_seconds=$((budget - key_seconds))
echo "== schemathesis: seed $seed, $budget s in all (GPS_CONTRACT_SEED=$seed reproduces the inputs)"

# One worker: with two, Hypothesis' lambda-source cache raced ("AST
# constructor recursion depth mismatch", a runtime error of the tool).
run() { # name seconds phases schemathesis-arguments...
  local name=$1 seconds=$2 phases=$3
  shift 3
  echo "-- $name: $phases ($seconds s)"
  "$contract_tools/bin/schemathesis" --config-file "$data_dir/schemathesis.toml" run gateway/openapi.json \
    --url "$base" --checks all --phases "$phases" \
    --max-time "$seconds" --seed "$seed" --workers 1 --request-timeout 10 \
    --generation-database none --no-color --output-truncate true --max-redirects 0 \
    --exclude-operation-id live --exclude-checks ignored_auth --generation-allow-x00 false \
    --generation-with-security-parameters false \
    --report junit,vcr --report-junit-path "$report_dir/$name.xml" --report-vcr-path "$report_dir/$name.yaml" \
    "$@" || true
}
# Each run gives the stateful phase its own two thirds: within one invocation
# the coverage and fuzzing phases would take most of the budget, and the
# stateful phase needs the time to walk the links to every operation. The stateful phase
# generates valid data only: it is there to go deep (create → list → item →
# change), and invalid data is what the other phases send everywhere.
both() { # name seconds schemathesis-arguments...
  local name=$1 seconds=$2
  shift 2
  local stateful=$((seconds * 2 / 3))
  run "$name" "$((seconds - stateful))" examples,coverage,fuzzing "$@"
  run "$name-stateful" "$stateful" stateful --mode positive "$@"
}
# The producer key: every brand operation it may do, and the refusals of the rest.
both producer-key "$key_seconds" --header "Authorization: Bearer $key" --exclude-operation-id sign_out
# The owner's session: what only people do (brands, members, keys), and
# cookie writes with their CSRF token. Signing out would end the run's session.
both owner-session "$session_seconds" --header "Cookie: $cookie" --header "x-csrf-token: $csrf" \
  --exclude-operation-id sign_out --exclude-operation-id sign_in

# Every check gates. An extra, unknown request header is not invalid data:
# HTTP (RFC 9110, 5.1) has recipients ignore header fields they do not
# recognise, so ST201 for nothing but that is reported, not counted.
python3 - "$report_dir" "$seed" gateway/openapi.json <<'PY'
import json, re, sys, pathlib
from xml.etree import ElementTree
report_dir, seed, document = sys.argv[1], sys.argv[2], sys.argv[3]
codes, reported, errors, failures = {}, {}, 0, 0
for report in sorted(pathlib.Path(report_dir).glob("*.xml")):
    for case in ElementTree.parse(report).iter("testcase"):
        for problem in list(case.iter("failure")) + list(case.iter("error")):
            if problem.tag == "error":
                errors += 1
                print(f"error ({report.stem}) {case.get('name')}: {(problem.get('message') or '')[:200]}")
            for code in sorted(set(re.findall(r"^- (ST\d+ [^\n]*)", problem.text or "", re.M))):
                key = code.split()[0]
                codes[code] = codes.get(code, 0) + 1
                unknown_header_only = key == "ST201" and re.search(
                    r"Invalid component: in header - object with unexpected properties", problem.text or "")
                if unknown_header_only:
                    reported.setdefault(case.get("name"), set()).add("an unknown extra header was accepted")
                else:
                    failures += 1
                    details = "; ".join(sorted(set(re.findall(r'"detail":"([^"]{0,160})', problem.text or ""))))
                    print(f"FAILURE ({report.stem}) {case.get('name')}: {code} {details[:400]}")
print("API contract findings by check (operations):", ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())) or "none")
for operation, details in sorted(reported.items()):
    print(f"  reported, not gating: {operation}: {'; '.join(sorted(details))[:300]}")

# Stateful coverage: which operations answered a success in the stateful
# phase of either run (the producer key's refusals are the owner's to do).
paths = json.load(open(document))["paths"]
templates = []
for path, item in paths.items():
    for method, operation in item.items():
        pattern = "^" + "/".join("[^/]+" if s.startswith("{") else re.escape(s) for s in path.split("/")) + "$"
        literal = len([s for s in path.split("/") if s and not s.startswith("{")])
        templates.append((method.upper(), re.compile(pattern), literal, operation["operationId"]))
excluded = {"live", "sign_out"}
tested = {t[3] for t in templates} - excluded
succeeded, seen = set(), set()
for cassette in sorted(pathlib.Path(report_dir).glob("*.yaml")):
    phase = uri = method = None
    for line in open(cassette, encoding="utf-8", errors="replace"):
        if line.startswith("- id: "):
            phase = uri = method = None
        elif line.startswith("    name: '") and phase is None:
            phase = line.split("'")[1]
        elif line.startswith("    uri: '"):
            uri = line[len("    uri: '"):].rstrip().rstrip("'").split("?")[0]
            uri = re.sub(r"^https?://[^/]+", "", uri)
        elif line.startswith("    method: '"):
            method = line.split("'")[1]
        elif line.startswith("      code: '") and phase == "stateful" and uri and method:
            status = int(line.split("'")[1])
            matches = [t for t in templates if t[0] == method and t[1].match(uri)]
            if not matches:
                continue
            operation = max(matches, key=lambda t: t[2])[3]
            seen.add(operation)
            if 200 <= status < 300 or (operation == "download_export" and status == 303):
                succeeded.add(operation)
covered = len(succeeded & tested)
print(f"Stateful coverage: {covered}/{len(tested)} operations answered a 2xx "
      f"({100 * covered / max(len(tested), 1):.0f} %; the download's 303 counts), "
      f"{len(seen & tested)} called")
missing = sorted(tested - succeeded)
if missing:
    print("  without a 2xx in the stateful phase:", ", ".join(missing))
gating = failures + errors
print(f"API contract (seed {seed}): {gating} gating failures")
sys.exit(1 if gating else 0)
PY
