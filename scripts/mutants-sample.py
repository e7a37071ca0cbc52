#!/usr/bin/env python3
"""A measured sample of the mutants in `.cargo/mutants.toml`, affordable on two cores.

    scripts/mutants-sample.py 11/25          # every 25th mutant, from offset 11
    scripts/mutants-sample.py 3/50 OUT.tsv   # a smaller sample, results where you say

cargo-mutants lists the mutants of the selection (`--sharding round-robin --shard K/N`,
with their diffs); each is applied to a clone of HEAD in MUTANTS_WORKDIR (default
/tmp/tobira-mutants, its own target directory, kept between runs so that each mutant's
build is incremental), built with the `mutants` profile, and tested on SQLite:

1. first the tests that reach its file (unit tests, and the API test modules named for the
   file below): a failure there is a catch, usually within a minute;
2. only when those all pass, the OP's whole suite, as cargo-mutants would run it.

So "missed" means what it means to cargo-mutants: no test of the OP noticed. A mutant that
does not compile is "unviable"; one that runs past the time limit, "timeout" (a catch for
cargo-mutants too). One line per mutant goes to the results file (default
mutants-sample.tsv in the work directory): name, result, seconds, the failing tests; a run
that is stopped goes on from there when started again with the same file. Needs
cargo-mutants and cargo-nextest.
"""
import json
import os
import re
import subprocess
import sys
import time

# The API test modules that exercise each part of the selection (first match wins).
REACHED_BY = [
    ("oidc/backchannel", "backchannel|sessions|support|deletion|apps"),
    ("oidc/federation", "federation|federation_web|upstreams|linked_console"),
    ("oidc/discovery", "oidc|keys|protocol|rp|key_rotation|health"),
    ("oidc/authorize", "oidc|protocol|flow|rp|hostile|two_step_oidc|grants"),
    ("oidc/login", "oidc|forms|throttle|password|flow|signup|newdevice|help|console"),
    ("oidc/logout", "oidc|sessions|backchannel|rp|protocol"),
    ("oidc/params", "protocol|hostile|oidc"),
    ("oidc/passkey", "passkeys_signin|passkey|passkeys_console"),
    ("oidc/revocation", "tokens|protocol|grants|oidc"),
    ("oidc/second_step", "second_step|two_step_oidc|two_step|two_step_console|recovery"),
    ("oidc/tokens", "oidc|protocol|tokens|rp|hostile|grants|client_cache|logs"),
    ("oidc/", "oidc|protocol|rp"),
    ("flow/", "flow|oidc|two_step_oidc|passkeys_signin|federation|protocol"),
    ("keys/", "keys|key_rotation|keys_cli|master_rotation|tokens|oidc|linked_console|two_step"),
    ("authn/passkey", "passkeys_signin|passkey|passkeys_console"),
    ("authn/second_step", "second_step|two_step_oidc|two_step|two_step_console|recovery"),
    ("authn/totp", "two_step|second_step|two_step_console"),
    ("authn/throttle", "throttle|password|outage|help"),
    ("authn/risk", "newdevice|history"),
    ("authn/session", "sessions|oidc|console"),
    ("authn/", "password|throttle|oidc|sessions|signup|newdevice|history|second_step"),
]
FAILED = re.compile(r"^\s+(?:FAIL|TIMEOUT|SIGSEGV|SIGABRT|SIGKILL) \[.*?\] \(.*?\) (.*)$", re.M)


def main():
    if len(sys.argv) < 2 or not re.fullmatch(r"\d+/\d+", sys.argv[1]):
        sys.exit(__doc__)
    shard = sys.argv[1]
    repo = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    ).stdout.strip()
    work = os.environ.get("MUTANTS_WORKDIR", "/tmp/tobira-mutants")
    out = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else os.path.join(work, "mutants-sample.tsv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}
    env["CARGO_TARGET_DIR"] = os.path.join(work, "target")

    listed = subprocess.run(
        ["cargo", "mutants", "--list", "--json", "--diff", "--sharding", "round-robin", "--shard", shard],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout
    mutants = json.loads(listed)
    if not os.path.isdir(os.path.join(work, ".git")):
        subprocess.run(["git", "clone", "-q", repo, work], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["git", "fetch", "-q", repo, head], cwd=work, check=True)
    subprocess.run(["git", "checkout", "-q", "--force", head], cwd=work, check=True)

    done = set()
    if os.path.exists(out):
        done = {line.split("\t")[0] for line in open(out)}
    print(f"{len(mutants)} mutants in shard {shard} of {head[:9]}; {len(done)} done already", flush=True)

    def run(cmd, limit):
        start = time.time()
        try:
            p = subprocess.run(cmd, cwd=work, env=env, shell=True, capture_output=True, text=True, timeout=limit)
            return p.returncode, p.stdout + p.stderr, time.time() - start
        except subprocess.TimeoutExpired:
            return "timeout", "", time.time() - start

    for m in mutants:
        if m["name"] in done:
            continue
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=work, check=True)
        patched = subprocess.run(["patch", m["file"]], cwd=work, input=m["diff"], text=True, capture_output=True)
        note = ""
        if patched.returncode != 0:
            result, secs, note = "patch-failed", 0.0, patched.stdout.strip()
        else:
            rc, _, secs = run("cargo nextest run -p tobira-auth --cargo-profile mutants --no-run", 1800)
            if rc != 0:
                result = "unviable"
            else:
                part = m["file"].removeprefix("crates/auth/src/")
                modules = next((v for k, v in REACHED_BY if part.startswith(k)), "oidc")
                reach = f"kind(lib) | (binary(api) & test(/^({modules})::/))"
                rc, log, t = run(f"cargo nextest run -p tobira-auth --cargo-profile mutants -E '{reach}'", 900)
                secs += t
                stage = "reaching tests"
                if rc == 0:
                    rc, log, t = run("cargo nextest run -p tobira-auth --cargo-profile mutants", 1800)
                    secs += t
                    stage = "whole suite"
                if rc == 0:
                    result = "missed"
                elif rc == "timeout":
                    result, note = "timeout", stage
                else:
                    result = "caught"
                    note = f"{stage}: " + "; ".join(sorted(set(FAILED.findall(log)))[:3])
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=work, check=True)
        with open(out, "a") as f:
            f.write(f"{m['name']}\t{result}\t{secs:.0f}\t{note}\n")
        print(f"{result:9} {secs:5.0f}s  {m['name']}", flush=True)

    lines = [line.split("\t") for line in open(out)]
    counts = {}
    for line in lines:
        counts[line[1]] = counts.get(line[1], 0) + 1
    viable = len(lines) - counts.get("unviable", 0) - counts.get("patch-failed", 0)
    caught = counts.get("caught", 0) + counts.get("timeout", 0)
    print(f"{caught} of {viable} viable mutants caught; {counts}")
    for line in lines:
        if line[1] == "missed":
            print("missed:", line[0])
    sys.exit(1 if counts.get("missed") else 0)


main()
