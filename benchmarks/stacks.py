"""
Summarise the raw stacks py-spy recorded of a simplemail server
(``load.py --profile DIR`` writes them, one file per run; so does ``py-spy
record --format raw --threads``): where the time went, by thread and by
kind of work.

    /work/venv/bin/python benchmarks/stacks.py DIR/simplemail-round1.txt \\
        [--messages N] [--top 25]

Prints:

  - the samples per thread kind: the reactor (MainThread) and the thread
    pool (PoolThread-*); with ``--gil`` (as load.py records) a sample is a
    moment when that thread held the GIL, so the shares are shares of the
    GIL, the resource a Python server has one of;
  - each thread kind's samples by category (first match from the top of
    the list below, looking at the whole stack), and, with ``--messages``
    (the messages acknowledged while py-spy ran) and ``--rate``, the
    milliseconds per message each category cost;
  - the functions with most samples of their own (leaf frames) and
    inclusive, per thread kind.

Categories (a stack is counted once, in the first that matches):

  logging        twisted.logger: formatting events, writing the log file
  build record   message.py (headers, From_ line, quoting) and the SMTP
                 ingress's _compose / receivedHeader / format_datetime
  spool locking  MboxFile.locked and what it calls: open, fcntl and
                 dot-lock, recovery check, index refresh, journal read
  spool append   MboxFile.append outside locking: intent, write, fsync,
                 indexing (_chunksKey)
  thread hop     handing work to the pool and results back: deferToThread*,
                 the pool's queue and conditions, callFromThread, the waker
  protocol       simplemail's and the SMTP ingress's dataReceived/
                 lineReceived/... and twisted.mail.smtp (and trypatches.py's
                 smtpnopause)
  transport      twisted.internet tcp/abstract reads and writes
  deferreds      twisted.internet.defer not under any of the above
  reactor        the rest of the reactor loop (epoll, timers)
  other          anything else
"""

import argparse
import collections
import re
import signal
import sys

CATEGORIES = [
    ("logging", re.compile(r"twisted/logger/|Logger\.(info|warn|error|failure|emit)")),
    ("build record", re.compile(
        r"twisted_mail/mail/message\.py|StoreMessage\._compose|receivedHeader|format_datetime"
        r"|StoreDelivery\.receivedHeader")),
    ("spool locking", re.compile(r"MboxFile\.locked|_GeneratorContextManager\.__(enter|exit)__")),
    ("spool append", re.compile(r"MboxFile\.append|_writeAll|_chunksKey")),
    ("thread hop", re.compile(
        r"deferToThread|threadpool\.py|_threads/|queue\.py|threading\.py|callFromThread"
        r"|_Waker|_UnixWaker|waker")),
    ("protocol", re.compile(r"twisted_mail/(doors/line|doors/\w+/\w+|doors/connections|wire)\.py|twisted/mail/smtp\.py"
                            r"|twisted/protocols/basic\.py"
                            r"|patchSmtpNoPause")),
    ("transport", re.compile(r"twisted/internet/(tcp|abstract)\.py")),
    ("deferreds", re.compile(r"twisted/internet/defer\.py")),
    ("reactor", re.compile(r"twisted/internet/")),
]


def threadKind(name):
    if "MainThread" in name:
        return "reactor"
    if "PoolThread" in name:
        return "pool"
    return "other thread"


def categorise(frames):
    text = ";".join(frames)
    for name, pattern in CATEGORIES:
        if pattern.search(text):
            return name
    return "other"


def read(path):
    """
    Yield C{(thread kind, [frames, root first], count)} from a py-spy raw
    file (collapsed stacks: C{thread;frame;frame... count}).
    """
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            # Drop line numbers: a function is one entry however many
            # lines of it were sampled.
            yield threadKind(frames[0]), [re.sub(r":\d+\)$", ")", f) for f in frames[1:]], \
                int(count)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", help="a py-spy raw stacks file")
    parser.add_argument("--messages", type=int, default=None,
                        help="messages acknowledged while py-spy ran: print ms per message")
    parser.add_argument("--rate", type=float, default=250.0,
                        help="py-spy's sampling rate, samples per second (load.py: 250)")
    parser.add_argument("--top", type=int, default=20, help="functions listed (20)")
    args = parser.parse_args(argv)

    total = 0
    perKind = collections.Counter()
    perCategory = collections.defaultdict(collections.Counter)
    leaf = collections.defaultdict(collections.Counter)
    inclusive = collections.defaultdict(collections.Counter)
    for kind, frames, count in read(args.path):
        total += count
        perKind[kind] += count
        perCategory[kind][categorise(frames)] += count
        if frames:
            leaf[kind][frames[-1]] += count
        for f in set(frames):
            inclusive[kind][f] += count
    if not total:
        print("no samples in {}".format(args.path))
        return 1

    def share(n):
        return "{:5.1f}%".format(100.0 * n / total)

    def perMessage(n):
        if not args.messages:
            return ""
        return "  {:.3f} ms/msg".format(1000.0 * n / args.rate / args.messages)

    print("{}: {} samples ({:.1f} s at {:g} Hz)".format(
        args.path, total, total / args.rate, args.rate))
    for kind, n in perKind.most_common():
        print("{:14s} {}{}".format(kind, share(n), perMessage(n)))
    for kind, _ in perKind.most_common():
        print()
        print("{}, by category (share of all samples):".format(kind))
        for name, n in perCategory[kind].most_common():
            print("  {:14s} {}{}".format(name, share(n), perMessage(n)))
        print("{}, most samples of their own:".format(kind))
        for f, n in leaf[kind].most_common(args.top):
            print("  {} {}".format(share(n), f))
        print("{}, inclusive (frames below the reactor loop or the pool's worker):".format(kind))
        shown = 0
        for f, n in inclusive[kind].most_common():
            if re.search(r"twisted/(scripts|application)/|threading\.py|_threadworker|"
                         r"<module>|ReactorBase\.(run|mainLoop)|_team\.py|^main \(", f):
                continue
            print("  {} {}".format(share(n), f))
            shown += 1
            if shown >= args.top:
                break
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # | head
    sys.exit(main())
