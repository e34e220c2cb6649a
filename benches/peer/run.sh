#!/usr/bin/env bash
# Side by side with a peer FHIR server (Helios HFS 0.2.7), in one run, on this machine: wrk with
# 32 connections for 10 s each — creates of a Patient, reads of one Patient by id, a search by
# a unique identifier — each server on a fresh store, on SQLite and on PostgreSQL. This project
# carries a service token and audits every request durably; HFS has neither. Then raw
# PostgreSQL, the physical limit: single-row INSERTs of the same JSON into a two-column table,
# and primary-key lookups of those rows (pgbench, the same 32 clients).
#
#   cargo build --release
#   HFS=/path/to/hfs benches/peer/run.sh          # HFS= empty: this project alone
#
# HFS is built once with `cargo install helios-hfs --version 0.2.7 --locked
# --no-default-features --features R4,sqlite,postgres` (about an hour on 2 cores) and needs the
# FHIR R4 search parameters in its data directory (HFS_PARAMS, a search-parameters-r4.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/peer
target="${CARGO_TARGET_DIR:-target}"
HOSPITAL="${HOSPITAL:-$target/release/hospital}"
HFS="${HFS:-}"
HFS_PARAMS="${HFS_PARAMS:-}"
PG_ADMIN="${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_BASE="${PG_ADMIN%/*}"
SECS="${SECS:-10}"
CONNS="${CONNS:-32}"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

secret="peer-bench-secret-0123456789abcdef0123456789abcdef"
nid="051085000127"
system="http://fhir.ehealth.gov.vn/core/sid/national_id"

fresh_pg() { psql "$PG_ADMIN" -q -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" 2>/dev/null; }

wait_up() {
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null -H "Authorization: Bearer ${BENCH_TOKEN:-}" "$1/metadata" && return 0
    sleep 0.1
  done
  echo "server at $1 did not start" >&2
  return 1
}

# wrk's figures: requests/s, p99 latency (ms), non-2xx answers.
measure() {
  local out rps p99 bad
  out="$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$here/$1" "$2")"
  rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; printf "%.1f", v}' <<<"$out")"
  bad="$(awk '/^non-2xx:/ {print $2}' <<<"$out")"
  [ "${bad:-0}" = "0" ] || echo "  ($1 against $2: $bad answers were not 2xx)" >&2
  printf '%s %s\n' "${rps%.*}" "$p99"
}

run_one() { # name backend base
  local name=$1 backend=$2 base=$3 created id search
  created="$(measure create.lua "$base/Patient")"
  id="$(curl -fsS -X POST -H "Authorization: Bearer ${BENCH_TOKEN:-}" -H 'Content-Type: application/fhir+json' \
    -d "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"$system\",\"value\":\"$nid\"}],\"name\":[{\"family\":\"Nguyễn\",\"given\":[\"Văn\",\"An\"]}],\"gender\":\"male\",\"birthDate\":\"1985-03-12\"}" \
    "$base/Patient" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  read_="$(measure get.lua "$base/Patient/$id")"
  search="$(measure get.lua "$base/Patient?identifier=$system%7C$nid")"
  echo "$name $backend creates/s ${created% *} create-p99 ${created#* } reads/s ${read_% *} read-p99 ${read_#* } search/s ${search% *} search-p99 ${search#* }" | tee -a "$work/results"
}

port=18181
for backend in sqlite postgres; do
  # This project.
  if [ "$backend" = sqlite ]; then url="sqlite://$work/hospital.db"; else fresh_pg peer_hospital; url="$PG_BASE/peer_hospital"; fi
  export BENCH_TOKEN
  BENCH_TOKEN="$(HOSPITAL_JWT_SECRET=$secret "$HOSPITAL" token --role service --subject peer-bench)"
  DATABASE_URL="$url" HOSPITAL_HTTP_ADDR="127.0.0.1:$port" HOSPITAL_RECORDS_GRPC_ADDR=127.0.0.1:0 \
    HOSPITAL_TELEMEDICINE_GRPC_ADDR=127.0.0.1:0 HOSPITAL_BILLING_GRPC_ADDR=127.0.0.1:0 \
    HOSPITAL_JWT_SECRET=$secret HOSPITAL_LOG=warn "$HOSPITAL" >/dev/null 2>"$work/hospital.log" &
  pid=$!
  wait_up "http://127.0.0.1:$port/fhir"
  run_one hospital "$backend" "http://127.0.0.1:$port/fhir"
  echo "hospital $backend peak-rss-kib $(awk '/VmHWM/ {print $2}' /proc/$pid/status)" | tee -a "$work/results"
  kill $pid; wait $pid 2>/dev/null || true

  # The peer.
  if [ -n "$HFS" ]; then
    BENCH_TOKEN=""
    mkdir -p "$work/hfs-$backend"
    cp "$HFS_PARAMS" "$work/hfs-$backend/search-parameters-r4.json"
    if [ "$backend" = sqlite ]; then url="$work/hfs-$backend/hfs.db"; else fresh_pg peer_hfs; url="$PG_BASE/peer_hfs"; fi
    HFS_DATA_DIR="$work/hfs-$backend" HFS_STORAGE_BACKEND=$backend HFS_DATABASE_URL="$url" \
      "$HFS" --port $((port + 1)) >"$work/hfs.log" 2>&1 &
    pid=$!
    wait_up "http://127.0.0.1:$((port + 1))"
    run_one hfs "$backend" "http://127.0.0.1:$((port + 1))"
    echo "hfs $backend peak-rss-kib $(awk '/VmHWM/ {print $2}' /proc/$pid/status)" | tee -a "$work/results"
    kill $pid; wait $pid 2>/dev/null || true
  fi
done

# Raw PostgreSQL: the same JSON, single-row INSERTs, then primary-key lookups of those rows.
fresh_pg peer_raw
psql "$PG_BASE/peer_raw" -q -c "CREATE TABLE raw (id bigserial PRIMARY KEY, body jsonb NOT NULL)"
body="$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$here/create.lua")"
printf "INSERT INTO raw (body) VALUES ('%s');\n" "$body" >"$work/insert.sql"
ins="$(pgbench -n -M prepared -c "$CONNS" -j 2 -T "$SECS" -f "$work/insert.sql" "$PG_BASE/peer_raw" 2>/dev/null | awk '/^tps/ {print $3}')"
rows="$(psql "$PG_BASE/peer_raw" -tA -c "SELECT max(id) FROM raw")"
printf '\\set id random(1, %s)\nSELECT body FROM raw WHERE id = :id;\n' "$rows" >"$work/select.sql"
sel="$(pgbench -n -M prepared -c "$CONNS" -j 2 -T "$SECS" -f "$work/select.sql" "$PG_BASE/peer_raw" 2>/dev/null | awk '/^tps/ {print $3}')"
echo "raw-postgres inserts/s ${ins%.*} pk-lookups/s ${sel%.*}" | tee -a "$work/results"
psql "$PG_ADMIN" -q -c "DROP DATABASE IF EXISTS peer_raw WITH (FORCE)" -c "DROP DATABASE IF EXISTS peer_hospital WITH (FORCE)" -c "DROP DATABASE IF EXISTS peer_hfs WITH (FORCE)" 2>/dev/null || true
