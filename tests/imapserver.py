"""
Starting a real C{twistd -n simplemail} with an IMAP door on the spool for
end-to-end tests (not a test module).
"""

from .certs import makeCertificate
from .serverprocess import ServerProcess, freePort


def startIMAPServer(testCase, extraArgs=(), tls=True, spool=None):
    """
    Start a server with a plain IMAP listener (STARTTLS offered with a
    certificate naming C{localhost}) for a test; it is stopped at cleanup.

    @return: the L{ServerProcess}, with C{imapPort} and C{certs} set.
    """
    certs = makeCertificate(testCase.mktemp(), hostname="localhost",
                            addresses=["127.0.0.1"])
    imapPort = freePort()
    args = ["--imap", "tcp:{}:interface=127.0.0.1".format(imapPort)]
    if tls:
        args += ["--imap-tls-cert", certs.child("cert.pem").path,
                 "--imap-tls-key", certs.child("key.pem").path]
    server = ServerProcess(spool or testCase.mktemp(), args + list(extraArgs))
    testCase.addCleanup(server.close)
    server.start()
    server.imapPort = imapPort
    server.certs = certs
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
