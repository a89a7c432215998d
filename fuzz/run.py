"""
Run the fuzz targets one after another, each in its own process, and say
what each did: executions, coverage (libFuzzer's C{cov:} and C{ft:}) and
whether it crashed (a property failed or an exception escaped).

A bounded run, as CI does it (a few seconds a target, fixed seed; exits 1
if any target crashes)::

    python -m fuzz.run --seconds 4

A long run by hand::

    python -m fuzz.run --runs 200000 --seconds 600 mime headers

New corpus entries go to a scratch directory (C{--work}), never into the
seed corpus; a crash leaves its input there as C{crash-<sha1>}, named in
the summary.  See fuzz/README.rst.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from fuzz.harness import TARGETS

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_STATS = re.compile(rb"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)")


def runTarget(name, work, seconds, runs=None, seed=1, maxLen=None, extra=()):
    """
    Fuzz one target.

    @return: a L{dict}: C{name}, C{executions}, C{cov}, C{ft}, C{seconds},
        C{crashed} (bool), C{artifacts} (paths), C{log} (the last lines).
    """
    corpus = os.path.join(work, name)
    os.makedirs(corpus, exist_ok=True)
    artifacts = os.path.join(work, "artifacts-" + name) + os.sep
    os.makedirs(artifacts, exist_ok=True)
    argv = [
        sys.executable, "-m", "fuzz.fuzz_" + name,
        "-seed={}".format(seed),
        "-max_total_time={}".format(seconds),
        "-artifact_prefix=" + artifacts,
        "-timeout=30",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
    ]
    if runs is not None:
        argv.append("-runs={}".format(runs))
    if maxLen is not None:
        argv.append("-max_len={}".format(maxLen))
    argv.extend(extra)
    argv += [corpus, os.path.join(HERE, "corpus", name)]
    started = time.monotonic()
    process = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - started
    output = process.stdout
    stats = _STATS.findall(output)
    executions, cov, ft = (int(x) for x in stats[-1]) if stats else (0, 0, 0)
    done = re.findall(rb"stat::number_of_executed_units: (\d+)", output)
    if done:
        executions = int(done[-1])
    found = sorted(os.path.join(artifacts, f) for f in os.listdir(artifacts))
    return {
        "name": name,
        "executions": executions,
        "cov": cov,
        "ft": ft,
        "seconds": round(elapsed, 1),
        "crashed": process.returncode != 0 or bool(found),
        "artifacts": found,
        "log": output.decode("utf-8", "replace").splitlines()[-40:],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run simplemail's fuzz targets.")
    parser.add_argument("targets", nargs="*", default=list(TARGETS),
                        help="targets to run (default: all): " + ", ".join(TARGETS))
    parser.add_argument("--seconds", type=int, default=4,
                        help="most seconds a target runs (default 4)")
    parser.add_argument("--runs", type=int, default=None,
                        help="stop a target after this many executions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-len", type=int, default=None)
    parser.add_argument("--work", default=None,
                        help="scratch directory for new corpus entries and crashes "
                             "(default: a fresh temporary one)")
    options = parser.parse_args(argv)
    unknown = [t for t in options.targets if t not in TARGETS]
    if unknown:
        parser.error("unknown target(s): " + ", ".join(unknown))
    work = options.work or tempfile.mkdtemp(prefix="simplemail-fuzz-")
    failed = []
    print("{:<12} {:>10} {:>6} {:>6} {:>7}  result".format(
        "target", "executions", "cov", "ft", "seconds"))
    for name in options.targets:
        result = runTarget(name, work, options.seconds, options.runs, options.seed,
                           options.max_len)
        print("{name:<12} {executions:>10} {cov:>6} {ft:>6} {seconds:>7}  {0}".format(
            "CRASH" if result["crashed"] else "ok", **result), flush=True)
        if result["crashed"]:
            failed.append(result)
    for result in failed:
        print("\n--- {} crashed; inputs: {}".format(
            result["name"], " ".join(result["artifacts"]) or "(none)"))
        print("\n".join(result["log"]))
    print("work directory: " + work)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
