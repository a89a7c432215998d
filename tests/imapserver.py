"""
Starting a server with an IMAP door for end-to-end tests (not a test
module): a real C{twistd -n simplemail} on the spool when the spool serves
the mailbox model, or else the same doors over the memory store in a
process of their own (L{tests.memoryserver}).
"""

import os
import subprocess
import sys

from .certs import makeCertificate
from .serverprocess import ServerProcess, freePort, twistdEnvironment

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "memoryserver.py")


def spoolServesFolders():
    """
    Whether the spool store serves the mailbox model (folders, UIDs).
    """
    from twisted_mail.stores.spool.store import SpoolStore

    return hasattr(SpoolStore, "openFolder")


class MemoryServerProcess(ServerProcess):
    """
    L{ServerProcess} running L{tests.memoryserver} instead of twistd.
    """

    def _spawn(self, port):
        self.port = port
        if self._logFile is None:
            self._logFile = open(self.logPath, "ab")
        self._logFile.flush()
        self._logStart = os.fstat(self._logFile.fileno()).st_size
        args = self.args(port)
        args = args[args.index("simplemail") + 1:]
        self.process = subprocess.Popen(
            [sys.executable, _SCRIPT] + args,
            env=twistdEnvironment(),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._logFile,
            stderr=subprocess.STDOUT,
        )


def startIMAPServer(testCase, extraArgs=(), tls=True, spool=None):
    """
    Start a server with a plain IMAP listener (STARTTLS offered with a
    certificate naming C{localhost}) for a test; it is stopped at cleanup.

    @return: the L{ServerProcess}, with C{imapPort}, C{certs} and
        C{kind} (C{"twistd"} or C{"memory"}) set.
    """
    certs = makeCertificate(testCase.mktemp(), hostname="localhost",
                            addresses=["127.0.0.1"])
    imapPort = freePort()
    args = ["--imap", "tcp:{}:interface=127.0.0.1".format(imapPort)]
    if tls:
        args += ["--imap-tls-cert", certs.child("cert.pem").path,
                 "--imap-tls-key", certs.child("key.pem").path]
    kind = "twistd" if spoolServesFolders() else "memory"
    cls = ServerProcess if kind == "twistd" else MemoryServerProcess
    server = cls(spool or testCase.mktemp(), args + list(extraArgs))
    testCase.addCleanup(server.close)
    server.start()
    server.imapPort = imapPort
    server.certs = certs
    server.kind = kind
    return server


class IMAPServerMixin:
    """
    For a test case: a server with an IMAP door (L{startIMAPServer}; TLS
    offered unless C{tls} is false), users bob and alice, and C{self.line},
    a line-protocol client logged in as alice; its log must stay free of
    tracebacks.
    """

    tls = True

    def setUp(self):
        self.server = startIMAPServer(self, tls=self.tls)
        self.addCleanup(self.assertCleanLog)
        c = self.server.connect()
        self.addCleanup(c.close)
        self.assertTrue(c.command(b"ADDU bob").startswith(b"+OK"))
        self.assertTrue(c.command(b"ADDU alice").startswith(b"+OK"))
        self.assertTrue(c.command(b"USER alice").startswith(b"+OK"))
        self.line = c

    def assertCleanLog(self):
        log = self.server.log()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)

    def send(self, body):
        """
        Deliver C{body} from alice to bob through the line protocol.
        """
        self.assertTrue(self.line.send(b"bob", body).startswith(b"+OK"))
