#!/bin/sh
# Release APP VERSION to ENV through a graylift server and wait for the outcome (exit 0 only on success).
# Needs: curl, python3; GRAYLIFT_SERVER (https://graylift.example:8080) and GRAYLIFT_TOKEN (a CI user's
# token, `graylift tokens create`). Where ENV needs approval the request waits for it (GRAYLIFT_APPROVAL_WAIT
# seconds, default 3600); a canary waiting for a manual promotion waits too (GRAYLIFT_WAIT, default 3600).
#   graylift-release.sh pyapp 2.4.1 prod "CI build 812" CHG-1234
set -eu
app=$1 version=$2 env=$3 reason=${4:-} ticket=${5:-}
api="${GRAYLIFT_SERVER%/}/api/v1"
poll=${GRAYLIFT_POLL:-5}

call() {  # METHOD PATH [JSON]: prints the body; fails with the server's message (problem+json detail)
  out=$(mktemp)
  code=$(curl -sS -o "$out" -w '%{http_code}' -X "$1" "$api$2" -H "Authorization: Bearer $GRAYLIFT_TOKEN" \
         -H 'Content-Type: application/json' -H 'X-Graylift-Trigger: api' ${3:+--data "$3"})
  if [ "$code" -ge 400 ]; then
    python3 -c 'import json,sys; print("graylift:", json.load(open(sys.argv[1])).get("detail"))' "$out" >&2 \
      || cat "$out" >&2
    rm -f "$out"; return 1
  fi
  cat "$out"; rm -f "$out"
}
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }

body=$(python3 -c 'import json,sys; print(json.dumps(dict(zip(["app","version","env","reason","ticket"], sys.argv[1:]))))' \
       "$app" "$version" "$env" "$reason" "$ticket")
started=$(call POST /releases "$body")
release=$(echo "$started" | field '(d.get("release") or {}).get("id") or ""')
if [ -z "$release" ]; then
  request=$(echo "$started" | field 'd["request"]["id"]')
  echo "request #$request waits for approval: ${GRAYLIFT_SERVER%/}/approvals"
  deadline=$(( $(date +%s) + ${GRAYLIFT_APPROVAL_WAIT:-3600} ))
  while :; do
    state=$(call GET "/requests/$request" | field 'd["state"] + " " + str(d["release_id"] or "")')
    case "$state" in
      started*) release=${state#started }; break ;;
      rejected*|cancelled*|expired*) echo "request #$request ${state%% *}" >&2; exit 1 ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] || { echo "request #$request not approved in time" >&2; exit 1; }
    sleep "$poll"
  done
fi
echo "release #$release: ${GRAYLIFT_SERVER%/}/releases/$release"
deadline=$(( $(date +%s) + ${GRAYLIFT_WAIT:-3600} ))
while :; do
  state=$(call GET "/releases/$release" | field 'd["state"] + " " + d["message"]')
  echo "  $state"
  case "$state" in
    succeeded*) exit 0 ;;
    rolled_back*|aborted*|failed*|paused*) exit 1 ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || { echo "release #$release still ${state%% *}" >&2; exit 1; }
  sleep "$poll"
done
