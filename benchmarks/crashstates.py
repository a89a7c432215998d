"""
The full power-cut exploration of the spool (tests/crashstates.py, in the
manner of ALICE): record a scripted workload, build every on-disk state a
power cut may leave after each file-system operation (up to --limit
combinations per crash point and per directory state), run the server's
start-up recovery on each distinct one and check that every acknowledged
delivery and delete survives exactly once, nothing is doubled, torn or
resurrected, and every mailbox parses as mbox.

    .venv/bin/python benchmarks/crashstates.py                 # every workload
    .venv/bin/python benchmarks/crashstates.py --limit 256 --workloads journal

CI runs a bounded exploration (tests/test_crashstates.py, 4 combinations
per point).  Prints the counts and every failing state's problems; exits 1
if any state failed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import crashstates  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=64,
                        help="combinations per crash point and directory state (64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workloads",
                        default="journal,nojournal,recovery,folders,foldersnojournal,"
                                "mixed,mixednojournal",
                        help="which of journal, nojournal, recovery (deliveries and "
                             "deletes), folders, foldersnojournal (flag changes and "
                             "moves), mixed, mixednojournal (deliveries, a flag change, "
                             "a move and a delete in one group) (all)")
    args = parser.parse_args(argv)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    print("command: {}".format(" ".join(sys.argv)))
    print("commit: {}; load average {:.2f} {:.2f} {:.2f}".format(commit, *os.getloadavg()))
    work = tempfile.mkdtemp(prefix="crashstates-")
    failed = 0
    try:
        for name in args.workloads.split(","):
            started = time.monotonic()
            journal = not name.endswith("nojournal")
            make = (crashstates.folderWorkload if name.startswith("folders")
                    else crashstates.mixedWorkload if name.startswith("mixed")
                    else crashstates.standardWorkload)
            workload = make(os.path.join(work, name, "spool"), journal=journal)
            recorder, inodes, acked = workload.recorder, None, ()
            if name == "recovery":
                recorder, acked, inodes = crashstates.recoveryWorkload(
                    workload, os.path.join(work, name, "recovering"), args.limit)
            generated, checked, failures = crashstates.explore(
                recorder, workload.users, workload.sent, journal, limit=args.limit,
                seed=args.seed, inodes=inodes, acked=acked)
            workload.close()
            print("{:16} {:4d} operations recorded, {:6d} states generated, {:6d} distinct "
                  "checked, {} failed ({:.0f} s)".format(
                      name, len(recorder.ops), generated, checked, len(failures),
                      time.monotonic() - started))
            for point, problems in failures[:20]:
                print("   crash after operation {}: {}".format(point, "; ".join(problems)))
            failed += len(failures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
