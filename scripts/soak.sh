#!/usr/bin/env bash
# Soak of the Tobira OP on this machine (127.0.0.1 only): a steady mix of sign-ins,
# console pages, refresh chains with userinfo, and JWKS/discovery against the release
# build for SOAK_MINUTES (30 by default), sampling the server's RSS and CPU and each
# workload's requests, errors, p50 and p99 every SOAK_SAMPLE_SECONDS (60).
#
#   scripts/soak.sh                                   # builds the release binaries; SQLite
#   LOAD_BACKEND=postgres scripts/soak.sh             # PostgreSQL + Redis
#   SOAK_MINUTES=5 TOBIRA_BIN=target/release/tobira scripts/soak.sh
#
# It is scripts/load.sh with LOAD_SCENARIOS=soak: the same build, temporary server, data
# directory or database and Redis prefix of its own, members and clients, and the same
# settings (LOAD_BACKEND, LOAD_DATABASE_URL, LOAD_REDIS_URL, LOAD_MEMBERS, LOAD_JSON_OUT,
# LOAD_KEEP_WORKDIR, TOBIRA_BIN); see its header. The workloads (scripts/load/soak.mjs):
#   SOAK_SIGNIN_VUS (2)    browsers signing in again and again (another of LOAD_MEMBERS,
#                          16 here, each round), keeping their cookies but the session:
#                          the console's pages, then sign-out by RP-initiated logout;
#                          SOAK_SIGNIN_PAUSE_MS (1000) between rounds
#   SOAK_CONSOLE_VUS (2)   members signed in once, reading the console's pages;
#                          SOAK_CONSOLE_PAUSE_MS (200) between pages
#   SOAK_REFRESH_VUS (8)   refresh-token chains, each rotation followed by two /userinfo;
#                          SOAK_REFRESH_PAUSE_MS (250) between rotations
#   SOAK_METADATA_VUS (2)  loops of GET /jwks and discovery; SOAK_METADATA_PAUSE_MS (20)
#   SOAK_WARMUP_MINUTES (10) the memory trend is fitted to the samples after this (the
#                          longest-lived per-sign-in state, a spent code, a pending
#                          second step, is kept 10 minutes)
# The result: a table with a row per sample, the RSS at the start, after the warm-up and at
# the end with its trend in MB per hour, and every error with its count and when it
# happened. Exit status: 0 when there was no error, 1 when there was one, 2 on a setup
# failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LOAD_SCENARIOS=soak
# The sign-ins go round the members: 16 unless set.
export LOAD_MEMBERS="${LOAD_MEMBERS:-16}"
exec "$ROOT/scripts/load.sh" "$@"
