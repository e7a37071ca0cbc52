#!/usr/bin/env bash
# Load measurement of the Tobira OP on this machine (127.0.0.1 only), against limits
# measured in the same run (issue 18's goals table).
#
#   scripts/load.sh                     # builds the release binaries, then measures
#   LOAD_BACKEND=postgres scripts/load.sh               # on PostgreSQL + Redis
#   TOBIRA_BIN=target/release/tobira scripts/load.sh   # skips the build
#
# First `tobira-bench limits --json` measures, before the server starts, what no request
# can cost less than on this machine now: CPU µs per signature and per check for each
# algorithm through the OP's key ring, and ms per argon2 verification with the
# configured parameters, with the hashing threads the server will use (and again after
# the scenarios: the machine's speed drifts, so each goal is held against the mean of the
# two, measured on either side of its figure). Then it starts
# `tobira serve` on a free port with a temporary data directory (SQLite and the
# in-process store; or with LOAD_BACKEND=postgres a database of its own, created and
# dropped, and a Redis key prefix of its own, deleted), server.trusted_proxies =
# 127.0.0.1/32 so that the load generator can simulate client addresses with
# X-Forwarded-For, registers members and two clients with the CLI, and measures:
#   memory: the idle server's RSS, then `tobira-bench seed` gives a member
#      LOAD_SEED_SESSIONS live sessions, grants and refresh tokens, LOAD_SEED_TOUCH of
#      them are used (a refresh, an authorization request), and the RSS is read again.
#      It runs first, so the later scenarios run beside the seeded rows.
#   tokens: LOAD_VUS members sign in through the real /authorize + /login flow, then
#      for LOAD_DURATION seconds each at LOAD_CONCURRENCY connections: GET /jwks,
#      GET /.well-known/openid-configuration, GET /userinfo, POST /token
#      client_credentials, and POST /token refresh_token, every virtual user rotating
#      its own token.
#   attack: the argon2 ceiling (wrong passwords nothing throttles, password checks per
#      second); complete sign-ins of LOAD_SIGNIN_VUS members, each on a browser that keeps
#      its cookies (so its device is known after its first success), plus
#      LOAD_SIGNIN_NEW_DEVICE_VUS on a new browser every time, for LOAD_SIGNIN_DURATION s;
#      the same while an attack runs: credential stuffing over unknown addresses from
#      many client addresses, guessing the members' passwords from many addresses, and
#      one single address; sign-ins/s, their success share, attacker requests/s, 401/429.
#   storm: client_credentials at LOAD_STORM_TOKEN_CONNECTIONS connections alone, then
#      while LOAD_STORM_SIGNIN_VUS members sign in over and over (hashing saturated):
#      the token endpoint's p99 beside its idle p99.
#   timing: response times of a wrong-password post for a locked account, a known
#      account, an unknown address, and a locked unknown address (LOAD_TIMING_SAMPLES).
# Every scenario prints its table; the last one is the goals table: each figure, its
# limit (measured above, or the issue's fixed figure), the ratio and the goal. CPU is
# the Tobira process's from /proc; in PostgreSQL mode the load database's backends' and
# the Redis server's are shown beside it, not counted in it. The server is always
# stopped at the end. Needs Node.js >= 20.18.1 and npm (the load generator, autocannon,
# and undici are pinned in scripts/load/package-lock.json); psql and redis-cli for
# LOAD_BACKEND=postgres.
#
# Environment:
#   TOBIRA_BIN            binary to run (default: build target/release/tobira and
#                         tobira-bench)
#   LOAD_BENCH_BIN        tobira-bench (default: beside TOBIRA_BIN)
#   LOAD_BACKEND          sqlite (default) or postgres
#   LOAD_DATABASE_URL     PostgreSQL server to create the load database on (default
#                         postgres://postgres@127.0.0.1:5432/test)
#   LOAD_REDIS_URL        Redis for the ephemeral store (default redis://127.0.0.1:6379)
#   LOAD_SCENARIOS        comma list of memory, tokens, attack, storm, timing; default all;
#                         or soak alone (scripts/soak.sh, scripts/load/soak.mjs)
#   LOAD_LIMITS_SECONDS   seconds of measurement per limit (default 1)
#   LOAD_DURATION         seconds per scenario (default 10)
#   LOAD_CONCURRENCY      connections per scenario (default 32)
#   LOAD_VUS              refresh-token chains, one sign-in each (default 32)
#   LOAD_MAX_REQUESTS     upper bound of requests per scenario (default 2000000)
#   LOAD_MEMBERS          members registered for the sign-in scenarios (default 8)
#   LOAD_SIGNIN_DURATION  seconds per sign-in phase and storm phase (default LOAD_DURATION)
#   LOAD_SIGNIN_VUS       members signing in on browsers they keep (default LOAD_MEMBERS)
#   LOAD_SIGNIN_NEW_DEVICE_VUS  members signing in on a new browser each time (default 2)
#   LOAD_SIGNIN_RETRY_MS  pause of a member after a failed sign-in (default 200)
#   LOAD_ATTACK_STUFFING  attacker connections: credential stuffing (default 16)
#   LOAD_ATTACK_GUESSING  attacker connections: guessing the members' passwords (default 4)
#   LOAD_ATTACK_SINGLE    attacker connections: one single client address (default 4)
#   LOAD_ATTACK_ADDRESS_REUSE  stuffing posts per client address (default 50; the
#                         server refuses an address after 30 accounts)
#   LOAD_HASH_CONCURRENCY posts in flight for the argon2 ceiling (default 4)
#   LOAD_STORM_TOKEN_CONNECTIONS  client_credentials connections in the storm (default 4)
#   LOAD_STORM_SIGNIN_VUS members signing in during the storm (default 2 × LOAD_MEMBERS)
#   LOAD_SEED_SESSIONS    live sessions seeded for the memory scenario (default 100000)
#   LOAD_SEED_TOUCH       seeded sessions used after seeding (default 16)
#   LOAD_TIMING_SAMPLES   posts per case in the timing scenario (default 200)
#   LOAD_JSON_OUT         also write the results (limits, goals, every table) as JSON here
#   LOAD_KEEP_WORKDIR=1   keep the temporary directory (server log, database)
#   CARGO_BUILD_JOBS      cargo's own variable, e.g. 1 on a shared two-core machine
# Exit status: 0 when every request succeeded, 1 when some failed, 2 on a setup failure.
# A goal missed is a figure, not a failure.
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
LOAD_BACKEND="${LOAD_BACKEND:-sqlite}"
case "$LOAD_BACKEND" in
  sqlite) ;;
  postgres)
    command -v psql >/dev/null || die "psql is required for LOAD_BACKEND=postgres"
    command -v redis-cli >/dev/null || die "redis-cli is required for LOAD_BACKEND=postgres"
    ;;
  *) die "LOAD_BACKEND must be sqlite or postgres, not $LOAD_BACKEND" ;;
esac

# --- the binaries ---------------------------------------------------------------------
if [[ -z "${TOBIRA_BIN:-}" ]]; then
  log "building the release binaries (cargo build --release --bin tobira --bin tobira-bench)"
  cargo build --release --bin tobira --bin tobira-bench
  TOBIRA_BIN="$ROOT/target/release/tobira"
fi
[[ -x "$TOBIRA_BIN" ]] || die "TOBIRA_BIN=$TOBIRA_BIN is not an executable"
# The OP refuses unknown TOBIRA_* variables (it would read this one as a key `bin`).
BIN="$TOBIRA_BIN"
unset TOBIRA_BIN
BENCH="${LOAD_BENCH_BIN:-$(dirname "$BIN")/tobira-bench}"
[[ -x "$BENCH" ]] ||
  die "$BENCH is not an executable (cargo build --release --bin tobira-bench, or set LOAD_BENCH_BIN)"

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
PG_DATABASE=""
REDIS_PREFIX=""
LOAD_DATABASE_URL="${LOAD_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
LOAD_REDIS_URL="${LOAD_REDIS_URL:-redis://127.0.0.1:6379}"
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
  # The server has stopped: nothing holds the load's database or keys any more.
  if [[ -n "$PG_DATABASE" ]]; then
    psql "$LOAD_DATABASE_URL" -v ON_ERROR_STOP=1 -qAtc "DROP DATABASE IF EXISTS $PG_DATABASE WITH (FORCE)" \
      >/dev/null 2>&1 || log "could not drop the database $PG_DATABASE"
  fi
  if [[ -n "$REDIS_PREFIX" ]]; then
    redis-cli -u "$LOAD_REDIS_URL" --scan --pattern "$REDIS_PREFIX*" 2>/dev/null |
      xargs -r -n 500 redis-cli -u "$LOAD_REDIS_URL" unlink >/dev/null 2>&1 ||
      log "could not delete the Redis keys $REDIS_PREFIX*"
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

# --- the same-run limits, before the server competes for the cores ---------------------
# With the operator's own TOBIRA_* settings (argon2 parameters, hashing threads), before
# this script sets the server's.
log "measuring the limits ($BENCH limits)"
"$BENCH" limits --json --seconds "${LOAD_LIMITS_SECONDS:-1}" >"$WORK/limits.json" 2>>"$WORK/cli.log" ||
  die "tobira-bench limits failed"

# Pick a free port on 127.0.0.1 (released just before the server binds it).
PORT="$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
')"
export TOBIRA_SERVER__BIND="127.0.0.1:$PORT"
export TOBIRA_ISSUER="http://localhost:$PORT"
export TOBIRA_DATA_DIR="$WORK/data"
# The load generator names simulated clients in X-Forwarded-For (the sign-in scenarios).
export TOBIRA_SERVER__TRUSTED_PROXIES="127.0.0.1/32"
BASE_URL="http://127.0.0.1:$PORT"

REDIS_PID=""
if [[ "$LOAD_BACKEND" == postgres ]]; then
  # A database and a key prefix of the run's own, so that nothing else on these servers
  # is touched and both go at the end (see cleanup).
  SUFFIX="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  psql "$LOAD_DATABASE_URL" -v ON_ERROR_STOP=1 -qAtc "CREATE DATABASE tobira_load_$SUFFIX" >/dev/null ||
    die "cannot create a database on $LOAD_DATABASE_URL"
  PG_DATABASE="tobira_load_$SUFFIX"
  export TOBIRA_DATABASE__URL="$(node -e '
    const u = new URL(process.argv[1]); u.pathname = "/" + process.argv[2]; console.log(u.href)
  ' "$LOAD_DATABASE_URL" "$PG_DATABASE")"
  redis-cli -u "$LOAD_REDIS_URL" ping >/dev/null 2>&1 || die "Redis at $LOAD_REDIS_URL does not answer"
  REDIS_PREFIX="tobira-load:$SUFFIX:"
  export TOBIRA_EPHEMERAL__URL="$LOAD_REDIS_URL"
  export TOBIRA_EPHEMERAL__KEY_PREFIX="$REDIS_PREFIX"
  # Redis's CPU is read from /proc when it runs on this machine.
  REDIS_PID="$(redis-cli -u "$LOAD_REDIS_URL" info server | tr -d '\r' | sed -n 's/^process_id://p')"
  [[ -n "$REDIS_PID" && -r "/proc/$REDIS_PID/stat" ]] || REDIS_PID=""
  log "PostgreSQL database $PG_DATABASE, Redis key prefix $REDIS_PREFIX"
fi

log "starting $BIN serve on $TOBIRA_SERVER__BIND (data in $TOBIRA_DATA_DIR)"
"$BIN" serve 2>"$WORK/server.log" >"$WORK/server.out" &
SERVER_PID=$!

for _ in $(seq 1 600); do
  grep -qs 'listening on http://' "$WORK/server.log" && break
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
# The member the memory scenario gives LOAD_SEED_SESSIONS sessions (no one else's
# per-account lookups then walk them).
SEED_EMAIL="seeded@example.jp"
for email in "${MEMBER_EMAILS[@]}" "${TIMING_EMAILS[@]}" "$SEED_EMAIL"; do
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
LOAD_LIMITS_JSON="$WORK/limits.json" \
LOAD_LIMITS_SECONDS="${LOAD_LIMITS_SECONDS:-1}" \
LOAD_BENCH_BIN="$BENCH" \
LOAD_SEED_EMAIL="$SEED_EMAIL" \
LOAD_BACKEND="$LOAD_BACKEND" \
LOAD_PG_DATABASE="$PG_DATABASE" \
LOAD_REDIS_PID="$REDIS_PID" \
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
