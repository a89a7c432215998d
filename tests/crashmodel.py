"""
A crash harness for the mailbox model in the spool: a worker process makes
flag changes, moves, deliveries and folder deletes through a L{SpoolStore}
and says on stdout what it begins and what was acknowledged; it is killed
with SIGKILL at random moments; a fresh store on the spool must then show
every acknowledged change, no message lost and none doubled (ids make it
checkable), and at most the one change in flight either done or not.

Run as a worker: C{python -m tests.crashmodel SPOOL SEED}.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

from twisted.python.failure import Failure

USER = "bob"
FOLDERS = ["INBOX", "A", "B"]
FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "$Label1", "Work"]


def result(d):
    """
    The result of a Deferred that has fired (raising its failure).
    """
    found = []
    d.addBoth(found.append)
    (value,) = found
    if isinstance(value, Failure):
        value.raiseException()
    return value


def openStore(spool):
    from twisted_mail.stores.spool.store import SpoolStore

    from tests.test_store import SynchronousThreads

    return SpoolStore(spool, reactor=SynchronousThreads())


def state(store):
    """
    Every message of the user: C{{id: [(folder, flags), ...]}} (a list, so
    that a doubled message shows), and the folder names.
    """
    found = {}
    names = [info.name for info in result(store.listFolders(USER))]
    for name in names:
        view = result(store.openFolder(USER, name))
        for message in result(view.listMessages()).messages:
            found.setdefault(message.id, []).append((name, sorted(message.flags)))
    return found, names


def prepare(spool):
    store = openStore(spool)
    try:
        result(store.addUser(USER))
        for name in FOLDERS[1:]:
            result(store.createFolder(USER, name))
        for i in range(6):
            result(store.deliver("alice", USER, b"message %d\n" % (i,)))
    finally:
        store.close()


def say(kind, **fields):
    fields["kind"] = kind
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def worker(spool, seed):
    rng = random.Random(seed)
    store = openStore(spool)
    counter = 0
    while True:
        found, names = state(store)
        ids = sorted(found)
        op = rng.choice(["flag", "flag", "flag", "move", "move", "deliver", "folder"])
        counter += 1
        if op == "flag" and ids:
            msgid = rng.choice(ids)
            folder, flags = found[msgid][0]
            add = rng.sample(FLAGS, rng.randint(0, 2))
            remove = [f for f in rng.sample(FLAGS, rng.randint(0, 2)) if f not in add]
            after = sorted((set(flags) | set(add)) - set(remove))
            say("begin", op="flag", id=msgid, before=flags, after=after)
            view = result(store.openFolder(USER, folder))
            result(view.setFlags([msgid], add=add, remove=remove))
            say("ack")
        elif op == "move" and ids:
            msgid = rng.choice(ids)
            folder, _ = found[msgid][0]
            target = rng.choice([f for f in FOLDERS if f != folder])
            say("begin", op="move", id=msgid, before=folder, after=target)
            view = result(store.openFolder(USER, folder))
            result(view.moveMessages([msgid], target))
            result(view.close())
            say("ack")
        elif op == "deliver":
            say("begin", op="deliver")
            msgid = result(store.deliver("alice", USER, b"new %d\n" % (counter,)))
            say("ack", id=msgid)
        elif op == "folder":
            name = "T{}".format(counter)
            say("begin", op="folder", name=name)
            result(store.createFolder(USER, name))
            summary = result(store.appendMessage(USER, name, b"Subject: t\n\nt\n"))
            say("made", name=name, id=summary.id)
            result(store.deleteFolder(USER, name))
            say("ack")


def check(before, lines, after, names):
    """
    The problems of a crash: C{before} the state when the worker started,
    C{lines} what it said, C{after} and C{names} the state now.

    @return: a L{list} of problem descriptions (empty: all is well).
    """
    expected = {msgid: places[0] for msgid, places in before.items()}
    inFlight = None
    madeIds = set()
    gone = set()
    for line in lines:
        if line["kind"] == "begin":
            inFlight = line
        elif line["kind"] == "made":
            madeIds.add(line["id"])
        elif line["kind"] == "ack":
            op = inFlight["op"]
            if op == "flag":
                folder, _ = expected[inFlight["id"]]
                expected[inFlight["id"]] = (folder, inFlight["after"])
            elif op == "move":
                _, flags = expected[inFlight["id"]]
                expected[inFlight["id"]] = (inFlight["after"], flags)
            elif op == "deliver":
                expected[line["id"]] = ("INBOX", [])
            elif op == "folder":
                gone.add(inFlight["name"])
            inFlight = None
    problems = []
    for msgid, places in after.items():
        if len(places) > 1:
            problems.append("doubled: {} in {}".format(msgid, places))
    for msgid, (folder, flags) in expected.items():
        place = after.get(msgid, [None])[0]
        allowed = [(folder, flags)]
        if inFlight is not None and inFlight.get("id") == msgid:
            if inFlight["op"] == "flag":
                allowed.append((folder, inFlight["after"]))
            elif inFlight["op"] == "move":
                allowed.append((inFlight["after"], flags))
        if place is None:
            problems.append("lost: {} (expected in {})".format(msgid, folder))
        elif (place[0], sorted(place[1])) not in [(f, sorted(g)) for f, g in allowed]:
            problems.append("{}: {} is not one of {}".format(msgid, place, allowed))
    for msgid in after:
        if msgid in expected:
            continue
        if inFlight is not None and inFlight["op"] in ("deliver", "folder"):
            continue  # the delivery in flight, or the folder's message
        problems.append("unexpected message {}".format(msgid))
    for name in gone:
        if name in names:
            problems.append("deleted folder {} is back".format(name))
    for msgid in madeIds:
        if msgid in after and after[msgid][0][0] not in names:
            problems.append("message {} of a deleted folder shows".format(msgid))
    return problems


def run(spool, rounds, seed, log=None):
    """
    Crash the worker C{rounds} times at random moments.

    @return: the problems found, and how many operations were acknowledged.
    """
    rng = random.Random(seed)
    prepare(spool)
    problems = []
    acknowledged = 0
    for number in range(rounds):
        store = openStore(spool)
        try:
            before, _ = state(store)
        finally:
            store.close()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.crashmodel", spool, str(seed * 1000 + number)],
            stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL, env=env)
        # Once it works (its first line), let it go on for a while: from
        # nothing to a few dozen operations.
        out = []
        reader = threading.Thread(target=lambda: out.extend(worker.stdout))
        reader.start()
        deadline = time.monotonic() + 60
        while not out and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 2.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
        reader.join(60)
        lines = [json.loads(line) for line in b"".join(out).decode().splitlines()
                 if line.strip()]
        acknowledged += sum(1 for line in lines if line["kind"] == "ack")
        store = openStore(spool)
        try:
            after, names = state(store)
        finally:
            store.close()
        found = check(before, lines, after, names)
        problems.extend("round {}: {}".format(number, p) for p in found)
    return problems, acknowledged


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]))
