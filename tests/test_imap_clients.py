"""
Real mail programs from Debian against the IMAP door: C{mbsync} (isync)
keeping a Maildir in step both ways (flags, a move, an upload),
C{offlineimap3}, and C{mutt} in a pty reading, flagging and deleting.
Under C{CI=1} a missing program fails the test (C{.ci/run} installs them);
elsewhere it skips.
"""

import fcntl
import imaplib
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

from twisted.trial.unittest import SynchronousTestCase

from .imapserver import IMAPServerMixin
from .programs import needProgram as need, programEnvironment

TIMEOUT = 60


class ClientTestCase(IMAPServerMixin, SynchronousTestCase):
    def setUp(self):
        IMAPServerMixin.setUp(self)
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)

    def imap(self):
        m = imaplib.IMAP4("127.0.0.1", self.server.imapPort, timeout=TIMEOUT)
        m.login("bob", "x")
        self.addCleanup(m.logout)
        return m

    def folder(self, m, name):
        """
        The (flags, text) of every message of a folder, in order.
        """
        typ, data = m.select(name)
        self.assertEqual(typ, "OK", data)
        if data == [b"0"]:
            return []
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[TEXT])")
        return [(item[0], item[1]) for item in data if isinstance(item, tuple)]

    def runProgram(self, args, **kwargs):
        result = subprocess.run(args, capture_output=True, timeout=TIMEOUT,
                                env=programEnvironment(HOME=self.home), cwd=self.home,
                                **kwargs)
        self.assertEqual(result.returncode, 0, (result.stdout[-3000:], result.stderr[-3000:]))
        return result


class MbsyncTests(ClientTestCase):
    def setUp(self):
        need("mbsync", "isync")
        ClientTestCase.setUp(self)
        self.maildir = os.path.join(self.home, "mail")
        os.makedirs(self.maildir)
        self.rc = os.path.join(self.home, "mbsyncrc")
        with open(self.rc, "w") as f:
            f.write(
                "IMAPAccount simplemail\nHost localhost\nPort {port}\nUser bob\nPass x\n"
                "SSLType STARTTLS\nCertificateFile {cert}\n\n"
                "IMAPStore remote\nAccount simplemail\n\n"
                "MaildirStore local\nPath {maildir}/\nInbox {maildir}/INBOX\n"
                "SubFolders Verbatim\n\n"
                "Channel mail\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n"
                "Expunge Both\nSyncState *\n".format(
                    port=self.server.imapPort, cert=self.server.certs.child("cert.pem").path,
                    maildir=self.maildir))

    def mbsync(self):
        return self.runProgram(["mbsync", "-c", self.rc, "-a"])

    def files(self, folder):
        found = []
        for sub in ("new", "cur"):
            directory = os.path.join(self.maildir, folder, sub)
            found += [os.path.join(directory, n) for n in sorted(os.listdir(directory))]
        return found

    def test_bothWays(self):
        """
        mbsync fetches the mail and keeps it in step both ways: a flag set
        on either side, a message moved to Archive and a message made
        locally reach the other side.
        """
        for i in range(3):
            self.send(b"hello %d\n" % i)
        self.mbsync()
        inbox = self.files("INBOX")
        self.assertEqual(len(inbox), 3)
        contents = {open(p, "rb").read().split(b"\n\n", 1)[1]: p for p in inbox}
        # Locally: flag "hello 0", move "hello 1" to Archive, write a draft.
        first = contents[b"hello 0\n"]
        os.rename(first, first.replace("/new/", "/cur/").rsplit(":2,", 1)[0] + ":2,FS")
        second = contents[b"hello 1\n"]
        os.rename(second, os.path.join(self.maildir, "Archive", "cur",
                                       "moved.1:2,S"))
        with open(os.path.join(self.maildir, "Drafts", "cur", "draft.1:2,D"), "wb") as f:
            f.write(b"From: bob@localhost\nSubject: draft\n\nunfinished\n")
        # On the server: "hello 2" read elsewhere, and new mail.
        m = self.imap()
        m.select("INBOX")
        m.store("3", "+FLAGS", "(\\Seen \\Answered)")
        m.close()
        self.send(b"hello 3\n")
        self.mbsync()
        inbox = self.folder(m, "INBOX")
        texts = {text: flags for flags, text in inbox}
        self.assertEqual(sorted(texts), [b"hello 0\r\n", b"hello 2\r\n", b"hello 3\r\n"])
        self.assertIn(b"\\Flagged", texts[b"hello 0\r\n"])
        self.assertIn(b"\\Seen", texts[b"hello 0\r\n"])
        archive = self.folder(m, "Archive")
        self.assertEqual([t for _, t in archive], [b"hello 1\r\n"])
        drafts = self.folder(m, "Drafts")
        self.assertEqual([t for _, t in drafts], [b"unfinished\r\n"])
        self.assertIn(b"\\Draft", drafts[0][0])
        m.close()
        local = self.files("INBOX")
        self.assertEqual(len(local), 3)
        replied = [p for p in local if open(p, "rb").read().endswith(b"hello 2\n")]
        self.assertTrue(replied[0].endswith(":2,RS"), replied)
        # A third run has nothing to do, and changes nothing.
        self.mbsync()
        self.assertEqual(sorted(self.files("INBOX")), sorted(local))


class OfflineIMAPTests(ClientTestCase):
    def test_offlineimap(self):
        """
        offlineimap3 mirrors every folder into a Maildir, and a flag set
        locally reaches the server.  (In clear on loopback: offlineimap3
        8.0 with STARTTLS was seen to die of SIGSEGV at connect now and
        then, in its own imaplib2 and TLS threads.)
        """
        need("offlineimap", "offlineimap3")
        for i in range(2):
            self.send(b"offline %d\n" % i)
        maildir = os.path.join(self.home, "Mail")
        rc = os.path.join(self.home, ".offlineimaprc")
        with open(rc, "w") as f:
            f.write(
                "[general]\naccounts = main\nmetadata = {home}/meta\nui = basic\n\n"
                "[Account main]\nlocalrepository = local\nremoterepository = remote\n\n"
                "[Repository local]\ntype = Maildir\nlocalfolders = {maildir}\n\n"
                "[Repository remote]\ntype = IMAP\nremotehost = localhost\n"
                "remoteport = {port}\nremoteuser = bob\nremotepass = x\nssl = no\n"
                "starttls = no\n".format(
                    home=self.home, maildir=maildir, port=self.server.imapPort))
        self.runProgram(["offlineimap", "-c", rc, "-o", "-u", "basic"])
        new = os.path.join(maildir, "INBOX", "new")
        names = sorted(os.listdir(new))
        self.assertEqual(len(names), 2)
        self.assertTrue(os.path.isdir(os.path.join(maildir, "Archive")))
        cur = os.path.join(maildir, "INBOX", "cur")
        os.rename(os.path.join(new, names[0]), os.path.join(cur, names[0].split(":2,")[0] + ":2,F"))
        self.runProgram(["offlineimap", "-c", rc, "-o", "-u", "basic"])
        flagged = [f for f, _ in self.folder(self.imap(), "INBOX") if b"\\Flagged" in f]
        self.assertEqual(len(flagged), 1)


class MuttTests(ClientTestCase):
    tls = False

    def test_readFlagDelete(self):
        """
        mutt in a terminal reads the first message, flags the second and
        deletes the third; the server keeps what it did.
        """
        need("mutt", "mutt")
        for i in range(3):
            self.send(b"mutt %d\n" % i)
        rc = os.path.join(self.home, "muttrc")
        with open(rc, "w") as f:
            f.write(
                "set folder=imap://bob@localhost:{port}/\nset spoolfile=+INBOX\n"
                "set imap_pass=x\nset ssl_starttls=no\nset ssl_force_tls=no\n"
                "set sort=mailbox-order\nset delete=yes\nset move=no\nset quit=yes\n"
                "set confirmappend=no\nset mark_old=no\nset header_cache=\n"
                "set pager_stop=yes\n".format(port=self.server.imapPort))
        with Terminal(["mutt", "-n", "-F", rc], env=programEnvironment(HOME=self.home)) as t:
            t.waitFor(b"Msgs:3")
            t.type(b"\r")
            t.waitFor(b"mutt 0")
            t.type(b"q")
            t.type(b"j")
            t.type(b"F")
            t.type(b"j")
            t.type(b"d")
            t.type(b"$")
            time.sleep(0.5)
            t.type(b"q")
            t.wait()
        m = self.imap()
        found = {text: flags for flags, text in self.folder(m, "INBOX")}
        self.assertEqual(sorted(found), [b"mutt 0\r\n", b"mutt 1\r\n"])
        self.assertIn(b"\\Seen", found[b"mutt 0\r\n"])
        self.assertIn(b"\\Flagged", found[b"mutt 1\r\n"])


class Terminal:
    """
    A program on a pty of 80x24, driven by what it prints.
    """

    def __init__(self, args, env):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = dict(env, TERM="vt100", LANG="C.UTF-8")
        self.process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                                        env=env, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self.master)

    def _read(self, deadline):
        ready, _, _ = select.select([self.master], [], [], max(0, deadline - time.monotonic()))
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            self.seen += data
            return data
        return None

    def waitFor(self, *markers):
        deadline = time.monotonic() + TIMEOUT
        while not all(m in self.seen for m in markers):
            if time.monotonic() > deadline or self._read(deadline) == b"":
                raise AssertionError("never saw {!r}; screen: {!r}".format(
                    markers, self.seen[-2000:]))
        self.seen = b""

    def type(self, keys):
        os.write(self.master, keys)
        deadline = time.monotonic() + 0.3
        while self._read(deadline):
            pass

    def wait(self):
        deadline = time.monotonic() + TIMEOUT
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(min(deadline, time.monotonic() + 0.2))
        if self.process.poll() is None:
            raise AssertionError("program did not exit; screen: {!r}".format(self.seen[-2000:]))
