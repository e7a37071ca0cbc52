#!/usr/bin/env python3
"""Mutation testing affordable on two cores: a measured sample, or every mutant over many runs.

    scripts/mutants-sample.py 11/25          # every 25th mutant, from offset 11
    scripts/mutants-sample.py 3/50 OUT.tsv   # a smaller sample, results where you say
    scripts/mutants-sample.py 0/1 scripts/mutants-ledger.tsv
                                             # every mutant, carried on from the committed ledger
    MUTANTS_BUDGET=7200 MUTANTS_JOBS=2 scripts/mutants-sample.py 0/1 scripts/mutants-ledger.tsv
                                             # the same, two mutants at a time, for two hours

cargo-mutants lists the mutants of the selection (`--sharding round-robin --shard K/N`,
with their diffs); each is applied to a clone of HEAD in MUTANTS_WORKDIR (default
/tmp/tobira-mutants, its own target directory, kept between runs so that each mutant's
build is incremental; MUTANTS_JOBS of them, default 1, each testing its own mutant: a
build of the OP keeps only one core busy most of the time), built with the `mutants`
profile, and tested on SQLite:

1. the OP's unit tests, built alone (a catch there costs one build of the library);
2. when those pass, the API test modules named for the mutant's file below;
3. only when those all pass too, the OP's whole suite, as cargo-mutants would run it.
A file with no unit tests of its own skips the first stage (the API tests catch nearly all
of its mutants); its third stage then runs the unit tests too.

So "missed" means what it means to cargo-mutants: no test of the OP noticed. A mutant that
does not compile is "unviable"; one whose tests run past the time limit, "timeout" (a catch
for cargo-mutants too). One line per mutant goes to the results file (default
mutants-sample.tsv in the work directory): name, result, seconds, the failing test, and
the commit it was tested at. A run that is stopped goes on from there when started again
with the same file, even at a later commit: a result still counts while the mutant's file,
apart from the unit tests at its end, is unchanged since its commit (a "missed" one, while
nothing of the OP has changed, so that a new test gets its chance); the others are tested
again. A missed mutant that cannot be caught (an equivalent one) is explained in
scripts/mutants-explained.tsv: file, mutation, the line it changes, why. The summary
(MUTANTS_BUDGET=0 prints it alone) counts the results file by file and exits 1 when a
missed mutant is not explained. Needs cargo-mutants and cargo-nextest.
"""
import json
import os
import re
import subprocess
import sys
import threading
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
    ("flow/", "flow|oidc|two_step_oidc|passkeys_signin|federation|protocol|hostile"),
    ("keys/", "keys|key_rotation|keys_cli|master_rotation|tokens|oidc|linked_console|two_step"),
    ("authn/passkey", "passkeys_signin|passkey|passkeys_console"),
    ("authn/second_step", "second_step|two_step_oidc|two_step|two_step_console|recovery"),
    ("authn/totp", "two_step|second_step|two_step_console"),
    ("authn/throttle", "throttle|password|outage|help"),
    ("authn/risk", "newdevice|history"),
    ("authn/session", "sessions|oidc|console"),
    ("authn/", "password|throttle|oidc|sessions|signup|newdevice|history|second_step"),
]
# nextest's lines for a failed test: "FAIL [ 0.5s] (5/6) tobira-auth::api flow::name", or
# with retries "TRY 2 FAIL [...]".
FAILED = re.compile(r"^\s+(?:TRY \d+ )?(?:FAIL|TIMEOUT|SIGSEGV|SIGABRT|SIGKILL) \[.*?\] \(.*?\) (.*)$", re.M)
NEXTEST = "cargo nextest run -p tobira-auth --cargo-profile mutants --profile mutants"


def git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def still_valid(entry, head, repo, memo):
    """Whether a recorded result still holds at HEAD (see the module's documentation)."""
    name, result, commit, file = entry[0], entry[1], entry[4], entry[5]
    if commit == head:
        return True
    if result == "missed":
        key = (commit, "crates/auth")
        if key not in memo:
            memo[key] = git("diff", "--quiet", commit, head, "--", "crates/auth", cwd=repo).returncode == 0
        return memo[key]
    for at in (commit, head):
        if (at, file) not in memo:
            memo[(at, file)] = code_of(git("show", f"{at}:{file}", cwd=repo).stdout)
    return memo[(commit, file)] == memo[(head, file)]


def code_of(text):
    """A file without its unit tests (the `#[cfg(test)] mod tests` at its end): a test added
    there to kill one mutant leaves the others' results, and their line numbers, as they were."""
    tests = re.search(r"^#\[cfg\(test\)\]\s*\n(?:pub(?:\([^)]*\))? )?mod tests\b", text, re.M)
    return text[: tests.start()] if tests else text


def main():
    if len(sys.argv) < 2 or not re.fullmatch(r"\d+/\d+", sys.argv[1]):
        sys.exit(__doc__)
    shard = sys.argv[1]
    repo = git("rev-parse", "--show-toplevel").stdout.strip()
    work = os.environ.get("MUTANTS_WORKDIR", "/tmp/tobira-mutants")
    out = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else os.path.join(work, "mutants-sample.tsv")
    budget = float(os.environ.get("MUTANTS_BUDGET", "inf"))
    jobs = int(os.environ.get("MUTANTS_JOBS", "1"))
    began = time.time()
    if budget > 0 and os.nice(0) > 12:
        # The hashing threads' priority test would fail for every mutant: all "caught".
        sys.exit(f"run at a nice value of 12 or less (this is {os.nice(0)}): see the README")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}

    listed = subprocess.run(
        ["cargo", "mutants", "--list", "--json", "--diff", "--sharding", "round-robin", "--shard", shard],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout
    mutants = json.loads(listed)
    head = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    # One clone per job, each with its own target directory.
    trees = [work] + [f"{work}-{i}" for i in range(1, jobs)]
    for tree in trees if budget > 0 else []:
        if not os.path.isdir(os.path.join(tree, ".git")):
            subprocess.run(["git", "clone", "-q", repo, tree], check=True)
        subprocess.run(["git", "fetch", "-q", repo, head], cwd=tree, check=True)
        subprocess.run(["git", "checkout", "-q", "--force", head], cwd=tree, check=True)

    # Results from earlier runs that still hold; the others are dropped from the file.
    kept, memo = [], {}
    if os.path.exists(out):
        for line in open(out):
            entry = line.rstrip("\n").split("\t")
            if len(entry) == 6 and still_valid(entry, head, repo, memo):
                kept.append(entry)
    if budget > 0:
        with open(out, "w") as f:
            f.writelines("\t".join(e) + "\n" for e in kept)
    listed_names = {m["name"] for m in mutants}
    done = {e[0] for e in kept} & listed_names
    print(f"{len(mutants)} mutants in shard {shard} of {head[:9]}; {len(done)} done already", flush=True)

    def run(tree, cmd, limit):
        start = time.time()
        tree_env = dict(env, CARGO_TARGET_DIR=os.path.join(tree, "target"))
        try:
            p = subprocess.run(cmd, cwd=tree, env=tree_env, shell=True, capture_output=True, text=True, timeout=limit)
            return p.returncode, p.stdout + p.stderr, time.time() - start
        except subprocess.TimeoutExpired:
            return "timeout", "", time.time() - start

    def test(tree, m):
        """The result of one mutant already applied to the tree, its seconds and a note."""
        secs = 0.0
        part = m["file"].removeprefix("crates/auth/src/")
        modules = next((v for k, v in REACHED_BY if part.startswith(k)), "oidc")
        reaching = f"binary(api) & test(/^({modules})::/)"
        # A file without unit tests of its own is nearly always caught by the API tests:
        # there, building the unit tests first would only add their build to each catch.
        with open(os.path.join(tree, m["file"])) as f:
            text = f.read()
        if code_of(text) != text:
            stages = [
                ("unit tests", f"{NEXTEST} --lib"),
                ("reaching tests", f"{NEXTEST} -E '{reaching}'"),
                ("whole suite", f"{NEXTEST} -E 'not kind(lib) & not ({reaching})'"),
            ]
        else:
            stages = [
                ("reaching tests", f"{NEXTEST} -E '{reaching}'"),
                ("whole suite", f"{NEXTEST} -E 'not ({reaching})'"),
            ]
        for stage, command in stages:
            rc, log, t = run(tree, f"{command} --no-run", 1800)
            secs += t
            if rc != 0:
                return "unviable", secs, stage
            rc, log, t = run(tree, command, 1800)
            secs += t
            if rc == "timeout":
                return "timeout", secs, stage
            if rc != 0:
                failed = sorted(set(FAILED.findall(log)))
                return "caught", secs, f"{stage}: " + (failed[0] if failed else f"exit {rc}")
        return "missed", secs, ""

    pending = [m for m in mutants if m["name"] not in done]
    lock = threading.Lock()

    def worker(tree):
        while True:
            with lock:
                if not pending:
                    return
                if time.time() - began > budget:
                    print("the time budget is spent; run again to go on", flush=True)
                    return
                m = pending.pop(0)
            subprocess.run(["git", "checkout", "-q", "--", "."], cwd=tree, check=True)
            patched = subprocess.run(["patch", m["file"]], cwd=tree, input=m["diff"], text=True, capture_output=True)
            if patched.returncode != 0:
                result, secs, note = "patch-failed", 0.0, patched.stdout.strip().replace("\n", " ")
            else:
                result, secs, note = test(tree, m)
            subprocess.run(["git", "checkout", "-q", "--", "."], cwd=tree, check=True)
            with lock:
                with open(out, "a") as f:
                    f.write(f"{m['name']}\t{result}\t{secs:.0f}\t{note}\t{head}\t{m['file']}\n")
                print(f"{result:9} {secs:5.0f}s  {m['name']}", flush=True)

    threads = [threading.Thread(target=worker, args=(tree,)) for tree in trees]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    by_name = {m["name"]: m for m in mutants}
    lines = [
        e for e in (line.rstrip("\n").split("\t") for line in open(out))
        if e[0] in by_name and len(e) == 6 and still_valid(e, head, repo, memo)
    ]
    counts, files = {}, {}
    for m in mutants:
        files.setdefault(m["file"], {"listed": 0})["listed"] += 1
    for line in lines:
        counts[line[1]] = counts.get(line[1], 0) + 1
        per_file = files[by_name[line[0]]["file"]]
        per_file[line[1]] = per_file.get(line[1], 0) + 1
    print("file: tested of listed, then the results")
    for file, per_file in sorted(files.items()):
        listed_here = per_file.pop("listed")
        tested_here = sum(per_file.values())
        if tested_here:
            print(f"  {file}: {tested_here} of {listed_here}; {per_file}")
    viable = len(lines) - counts.get("unviable", 0) - counts.get("patch-failed", 0)
    caught = counts.get("caught", 0) + counts.get("timeout", 0)
    print(f"{len(lines)} of {len(mutants)} mutants tested: {caught} of {viable} viable caught; {counts}")
    explained = read_explained(repo)
    unexplained = 0
    for line in lines:
        if line[1] == "missed":
            reason = explained.get(explanation_key(by_name[line[0]]))
            if reason:
                print(f"missed, explained: {line[0]}\n    {reason}")
            else:
                unexplained += 1
                print(f"missed: {line[0]}")
    sys.exit(1 if unexplained else 0)


def explanation_key(m):
    """A missed mutant as `scripts/mutants-explained.tsv` names it: its file, the mutation
    without its position, and the line it changes (so that an explanation survives edits
    elsewhere in the file, and is lost when the line itself changes)."""
    mutation = m["name"].split(": ", 1)[1]
    removed = [l[1:].strip() for l in m["diff"].splitlines() if l.startswith("-") and not l.startswith("---")]
    return (m["file"], mutation, removed[0] if removed else "")


def read_explained(repo):
    """The missed mutants explained as equivalent (or not worth a test), with the reason."""
    path = os.path.join(repo, "scripts", "mutants-explained.tsv")
    explained = {}
    if os.path.exists(path):
        for line in open(path):
            if line.strip() and not line.startswith("#"):
                file, mutation, changed, reason = line.rstrip("\n").split("\t")
                explained[(file, mutation, changed)] = reason
    return explained

main()
