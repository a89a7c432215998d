"""
Run twistd simplemail from another checkout of the code, for A/B runs of
two trees interleaved in one load.py invocation (same machine, same
minute).  load.py passes each --variant to it as SM_PATCH: a directory is
a checkout (``git archive`` of the commit to compare, unpacked) whose
code runs instead; 'none' runs this checkout.  The process is replaced
(same pid) and starts in the other checkout's directory, which
``python -c`` and the workers' ``python -m`` put first on sys.path (a
PYTHONPATH alone loses to the working directory); --workers workers
inherit the tree.

    git archive c538864 | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    .venv/bin/python benchmarks/load.py --servers simplemail --rounds 3 \\
        --twistd-wrapper benchmarks/abtree.py --variant /tmp/base --variant none
"""

import os
import sys

TWISTD = ("import sys; sys.argv[0] = 'twistd'; "
          "from twisted.scripts.twistd import run; run()")

tree = os.environ.get("SM_PATCH", "")
if tree not in ("", "none"):
    if not os.path.isdir(os.path.join(tree, "twisted_mail")):
        sys.exit("abtree.py: {!r} is not a checkout".format(tree))
    os.environ["PYTHONPATH"] = tree
    # "python -c" and the workers' "python -m" put the working directory
    # (load.py's: this checkout) first on sys.path: start from the tree's.
    os.chdir(tree)
os.execv(sys.executable, [sys.executable, "-c", TWISTD] + sys.argv[1:])
