#!/usr/bin/env bash
# Load measurement of the Tobira OP on this machine (127.0.0.1 only).
#
#   scripts/load.sh                     # builds the release binary, then measures
#   TOBIRA_BIN=target/release/tobira scripts/load.sh   # skips the build
#
# It starts `tobira serve` on a free port with a temporary data directory (SQLite,
# in-process store, server.trusted_proxies = 127.0.0.1/32 so that the load generator
# can simulate client addresses with X-Forwarded-For), registers members and two
# clients with the CLI, signs LOAD_VUS members in through the real /authorize + /login
# flow, then measures for LOAD_DURATION seconds each at LOAD_CONCURRENCY connections:
#   1. GET /jwks   2. GET /userinfo   3. POST /token client_credentials
#   4. POST /token refresh_token, every virtual user rotating its own token.
# Then password sign-in and its brute-force throttling (scenario "attack"):
#   5. the argon2 ceiling: wrong passwords nothing throttles, password checks per second
#   6. complete sign-ins of LOAD_SIGNIN_VUS members, each on a browser that keeps its
#      cookies (so its device is known after its first success), plus
#      LOAD_SIGNIN_NEW_DEVICE_VUS on a new browser every time, for LOAD_SIGNIN_DURATION s
#   7. the same while an attack runs: credential stuffing over unknown addresses from
#      many client addresses, guessing the members' passwords from many addresses, and
#      one single address; sign-ins/s, their success share, attacker requests/s, 401/429
# and (scenario "timing"):
#   8. response times of a wrong-password post for a locked account, a known account,
#      an unknown address, and a locked unknown address (LOAD_TIMING_SAMPLES each).
# The server is always stopped at the end. Needs Node.js >= 20.18.1 and npm (the load
# generator, autocannon, and undici are pinned in scripts/load/package-lock.json).
#
# Environment:
#   TOBIRA_BIN            binary to run (default: build target/release/tobira)
#   LOAD_SCENARIOS        comma list of tokens (1-4), attack (5-7), timing (8); default all
#   LOAD_DURATION         seconds per scenario (default 10)
#   LOAD_CONCURRENCY      connections per scenario (default 32)
#   LOAD_VUS              refresh-token chains, one sign-in each (default 32)
#   LOAD_MAX_REQUESTS     upper bound of requests per scenario (default 2000000)
#   LOAD_MEMBERS          members registered for scenarios 6-7 (default 8)
#   LOAD_SIGNIN_DURATION  seconds per sign-in phase (default LOAD_DURATION)
#   LOAD_SIGNIN_VUS       members signing in on browsers they keep (default LOAD_MEMBERS)
#   LOAD_SIGNIN_NEW_DEVICE_VUS  members signing in on a new browser each time (default 2)
#   LOAD_SIGNIN_RETRY_MS  pause of a member after a failed sign-in (default 200)
#   LOAD_ATTACK_STUFFING  attacker connections: credential stuffing (default 16)
#   LOAD_ATTACK_GUESSING  attacker connections: guessing the members' passwords (default 4)
#   LOAD_ATTACK_SINGLE    attacker connections: one single client address (default 4)
#   LOAD_ATTACK_ADDRESS_REUSE  stuffing posts per client address (default 50; the
#                         server refuses an address after 30 accounts)
#   LOAD_HASH_CONCURRENCY posts in flight for the argon2 ceiling (default 4)
#   LOAD_TIMING_SAMPLES   posts per case in scenario 8 (default 200)
#   LOAD_JSON_OUT         also write the results as JSON to this file
#   LOAD_KEEP_WORKDIR=1   keep the temporary directory (server log, database)
#   CARGO_BUILD_JOBS      cargo's own variable, e.g. 1 on a shared two-core machine
# Exit status: 0 when every request succeeded, 1 when some failed, 2 on a setup failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOAD_DIR="$ROOT/scripts/load"

log() { printf '[load] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  [[ -s "${WORK:-}/cli.log" ]] && tail -n 20 "$WORK/cli.log" >&2
  exit 2
}

command -v node >/dev/null || die "node is required"
command -v npm >/dev/null || die "npm is required"

# --- the binary -----------------------------------------------------------------------
if [[ -z "${TOBIRA_BIN:-}" ]]; then
  log "building the release binary (cargo build --release --bin tobira)"
  cargo build --release --bin tobira
  TOBIRA_BIN="$ROOT/target/release/tobira"
fi
[[ -x "$TOBIRA_BIN" ]] || die "TOBIRA_BIN=$TOBIRA_BIN is not an executable"
# The OP refuses unknown TOBIRA_* variables (it would read this one as a key `bin`).
BIN="$TOBIRA_BIN"
unset TOBIRA_BIN

# --- the load generator -----------------------------------------------------------------
if [[ ! -f "$LOAD_DIR/node_modules/.package-lock.json" \
      || "$LOAD_DIR/package-lock.json" -nt "$LOAD_DIR/node_modules/.package-lock.json" ]]; then
  log "installing the load generator (npm ci in scripts/load)"
  (cd "$LOAD_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
fi

# --- a temporary OP -------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tobira-load.XXXXXX")"
SERVER_PID=""
NODE_PID=""
cleanup() {
  local status=$?
  if [[ -n "$NODE_PID" ]] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -TERM "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    # Give it 10 s to shut down gracefully, then stop it for good.
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ "${LOAD_KEEP_WORKDIR:-}" == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Pick a free port on 127.0.0.1 (released just before the server binds it).
PORT="$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
')"
export TOBIRA_SERVER__BIND="127.0.0.1:$PORT"
export TOBIRA_ISSUER="http://localhost:$PORT"
export TOBIRA_DATA_DIR="$WORK/data"
# The load generator names simulated clients in X-Forwarded-For (scenarios 5-8).
export TOBIRA_SERVER__TRUSTED_PROXIES="127.0.0.1/32"
BASE_URL="http://127.0.0.1:$PORT"

log "starting $BIN serve on $TOBIRA_SERVER__BIND (data in $TOBIRA_DATA_DIR)"
"$BIN" serve 2>"$WORK/server.log" >"$WORK/server.out" &
SERVER_PID=$!

for _ in $(seq 1 600); do
  grep -q 'listening on http://' "$WORK/server.log" && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 30 "$WORK/server.log" >&2
    die "the server exited before listening"
  fi
  sleep 0.1
done
if ! grep -q 'listening on http://' "$WORK/server.log"; then
  tail -n 30 "$WORK/server.log" >&2
  die "the server did not start listening within 60 s"
fi
log "server up (pid $SERVER_PID)"

# --- accounts and clients, through the CLI (same environment, same database) -------------
LOAD_EMAIL="load@example.jp"
LOAD_PASSWORD="violet-tunnel-ramen-42"
printf '%s\n' "$LOAD_PASSWORD" |
  "$BIN" users add --email "$LOAD_EMAIL" --password-stdin --verified >/dev/null 2>>"$WORK/cli.log" ||
  die "tobira users add failed"
# Members for the sign-in scenarios, and two for the timing one (known, to be locked).
LOAD_MEMBERS="${LOAD_MEMBERS:-8}"
[[ "$LOAD_MEMBERS" =~ ^[1-9][0-9]*$ ]] || die "LOAD_MEMBERS must be a positive integer"
MEMBER_EMAILS=()
for i in $(seq 0 $((LOAD_MEMBERS - 1))); do
  MEMBER_EMAILS+=("member-$i@example.jp")
done
TIMING_EMAILS=("timing-known@example.jp" "timing-locked@example.jp")
for email in "${MEMBER_EMAILS[@]}" "${TIMING_EMAILS[@]}"; do
  printf '%s\n' "$LOAD_PASSWORD" |
    "$BIN" users add --email "$email" --password-stdin --verified >/dev/null 2>>"$WORK/cli.log" ||
    die "tobira users add ($email) failed"
done
"$BIN" clients add --name cc --redirect-uri http://127.0.0.1:9/cb \
  --grant client_credentials --json >"$WORK/cc.json" 2>>"$WORK/cli.log" || die "tobira clients add (cc) failed"
"$BIN" clients add --name rp --redirect-uri http://127.0.0.1:9/cb \
  --first-party --grant refresh_token --json >"$WORK/rp.json" 2>>"$WORK/cli.log" || die "tobira clients add (rp) failed"

# --- measure ---------------------------------------------------------------------------------
set +e
LOAD_BASE_URL="$BASE_URL" \
LOAD_CC_CLIENT_JSON="$WORK/cc.json" \
LOAD_RP_CLIENT_JSON="$WORK/rp.json" \
LOAD_EMAIL="$LOAD_EMAIL" \
LOAD_PASSWORD="$LOAD_PASSWORD" \
LOAD_MEMBER_EMAILS="$(IFS=,; echo "${MEMBER_EMAILS[*]}")" \
LOAD_TIMING_EMAILS="$(IFS=,; echo "${TIMING_EMAILS[*]}")" \
LOAD_SERVER_PID="$SERVER_PID" \
LOAD_CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)" \
  node "$LOAD_DIR/run.mjs" &
NODE_PID=$!
# `wait` (unlike a foreground command) lets a TERM/INT trap run at once.
wait "$NODE_PID"
STATUS=$?
NODE_PID=""
set -e

if [[ $STATUS -ne 0 ]]; then
  log "server log (last lines):"
  tail -n 20 "$WORK/server.log" >&2
fi
exit "$STATUS"
