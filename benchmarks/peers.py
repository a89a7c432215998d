"""
The durable SMTP peers simplemail is compared with (goal 1 of the
benchmarks).  Each answers 250 to a message only after it is on disk for
good, and accepts mail only for the listed local users (no relaying).

twisted   Twisted's ESMTP server (twisted.mail.smtp): an IMessageDelivery
          and an IMessage, delivering each message into a stdlib
          mailbox.Maildir per user (ROOT/USER/{tmp,new,cur}): Maildir.add
          fsyncs the message file, then the new/ directory is fsynced, before
          250.  The file work
          runs in the reactor's thread pool (deferToThread), so several
          deliveries' fsyncs overlap, as simplemail's do.

aiosmtpd  aiosmtpd's SMTP server appending each message to a stdlib
          mailbox.mbox per user (ROOT/USER), with lock (fcntl + dot-lock),
          add, flush (which fsyncs) and unlock per message, in the asyncio
          loop's default executor (threads), one writer per mailbox.

Run one by hand::

    python benchmarks/peers.py twisted --port 2525 --root /tmp/md --users u0,u1
    python benchmarks/peers.py aiosmtpd --port 2526 --root /tmp/mb --users u0,u1

Both bind 127.0.0.1 only and greet with 220 once ready.
"""

import argparse
import os
import sys
import threading

MAX_MESSAGE_SIZE = 10 * 1024 * 1024


def _syncDir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- Twisted ESMTP + Maildir


def runTwisted(args, users):
    import mailbox

    from twisted.internet import reactor
    from twisted.internet.threads import deferToThread
    from twisted.mail import smtp
    from zope.interface import implementer

    boxes = {}
    for user in users:
        path = os.path.join(args.root, user)
        boxes[user.encode("ascii")] = mailbox.Maildir(path, create=True)

    def deliver(md, data):
        # Maildir.add writes tmp/<unique name>, fsyncs it
        # (mailbox._sync_close), links it into new/ and removes the tmp/
        # name.  Deliveries run concurrently, even into one Maildir (that is
        # what Maildir is for); two threads picking the same name in the same
        # microsecond get ExternalClashError: try again.
        for attempt in range(5):
            try:
                md.add(data)
                break
            except mailbox.ExternalClashError:
                if attempt == 4:
                    raise
        # The new/ entry must be durable too.
        _syncDir(os.path.join(md._path, "new"))

    @implementer(smtp.IMessage)
    class MaildirMessage:
        def __init__(self, md):
            self.md = md
            self.lines = []
            self.size = 0

        def lineReceived(self, line):
            self.size += len(line) + 1
            if self.size > MAX_MESSAGE_SIZE:
                raise smtp.SMTPServerError(552, b"message too large")
            self.lines.append(line)

        def eomReceived(self):
            data, self.lines = b"\n".join(self.lines) + b"\n", None
            return deferToThread(deliver, self.md, data)

        def connectionLost(self):
            self.lines = None

    @implementer(smtp.IMessageDelivery)
    class MaildirDelivery:
        def receivedHeader(self, helo, origin, recipients):
            return None

        def validateFrom(self, helo, origin):
            return origin

        def validateTo(self, user):
            md = boxes.get(user.dest.local.lower())
            if md is None:
                raise smtp.SMTPBadRcpt(user)
            return lambda: MaildirMessage(md)

    class Factory(smtp.SMTPFactory):
        protocol = smtp.ESMTP
        domain = b"localhost"
        noisy = False

        def buildProtocol(self, addr):
            p = smtp.SMTPFactory.buildProtocol(self, addr)
            p.delivery = MaildirDelivery()  # SMTPFactory does not set it
            return p

    reactor.suggestThreadPoolSize(args.threads)
    reactor.listenTCP(args.port, Factory(), backlog=1024, interface="127.0.0.1")
    print("twisted ESMTP peer on 127.0.0.1:{} -> Maildirs in {}".format(args.port, args.root),
          flush=True)
    reactor.run()


# -- aiosmtpd + mbox


def runAiosmtpd(args, users):
    import asyncio
    import concurrent.futures
    import mailbox

    from aiosmtpd.smtp import SMTP

    boxes = {}
    for user in users:
        box = mailbox.mbox(os.path.join(args.root, user), create=True)
        boxes[user] = (box, threading.Lock())

    def deliver(user, data):
        box, lock = boxes[user]
        with lock:
            box.lock()  # fcntl lock + dot-lock
            try:
                box.add(data)
                box.flush()  # only appends pending: flush + fsync
            finally:
                box.unlock()

    class MboxHandler:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            local, _, _ = address.partition("@")
            if local.lower() not in boxes:
                return "550 no such user here"
            envelope.rcpt_tos.append(local.lower())
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            loop = asyncio.get_running_loop()
            for user in envelope.rcpt_tos:
                await loop.run_in_executor(None, deliver, user, envelope.original_content)
            return "250 Message accepted for delivery"

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(args.threads))
        handler = MboxHandler()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="localhost", ident="aiosmtpd peer",
                         data_size_limit=MAX_MESSAGE_SIZE),
            "127.0.0.1",
            args.port,
            backlog=1024,
        )
        print("aiosmtpd peer on 127.0.0.1:{} -> mboxes in {}".format(args.port, args.root),
              flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Run one of the durable SMTP peers simplemail is compared with.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=["twisted", "aiosmtpd"])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--root", required=True, help="directory of the mailboxes")
    parser.add_argument("--users", required=True, help="comma-separated local users")
    parser.add_argument("--threads", type=int, default=10,
                        help="worker threads for the file work (default 10, as "
                             "Twisted's default thread pool)")
    args = parser.parse_args(argv)
    users = [u.strip().lower() for u in args.users.split(",") if u.strip()]
    os.makedirs(args.root, exist_ok=True)
    import signal

    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    if args.kind == "twisted":
        runTwisted(args, users)
    else:
        runAiosmtpd(args, users)


if __name__ == "__main__":
    sys.exit(main())
