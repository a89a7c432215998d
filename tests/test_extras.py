"""
An option that needs an optional extra (C{tls}: C{--*-tls-cert} and C{ssl:}
endpoints; C{postgresql}: C{--database}) says in one line which extra to
install, and twistd exits 1: never an C{ImportError} traceback.

Each case runs a real twistd with the extra's modules hidden (a
C{sys.modules} entry set to L{None} makes their import fail, as when the
package is not installed).
"""

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from .serverprocess import START_TIMEOUT, twistdEnvironment

_HIDDEN_TWISTD = (
    "import sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    sys.modules[name] = None\n"
    "sys.argv[0:2] = ['twistd']\n"
    "from twisted.scripts.twistd import run\n"
    "run()\n"
)

_TLS = "OpenSSL,cryptography,service_identity"


class MissingExtraTests(SynchronousTestCase):
    def run_(self, hidden, *args):
        pidfile = self.mktemp()
        done = subprocess.run(
            [sys.executable, "-c", _HIDDEN_TWISTD, hidden, "--pidfile", pidfile,
             "-n", "simplemail", "--spool", self.mktemp()] + list(args),
            env=twistdEnvironment(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=START_TIMEOUT * 2)
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    def assertNeedsExtra(self, hidden, extra, option, *args):
        code, out, err = self.run_(hidden, *args)
        self.assertEqual(code, 1, out + err)
        self.assertNotIn("Traceback", out + err)
        self.assertNotIn("Error:", out + err)
        [line] = [line for line in (out + err).splitlines() if "needs the" in line]
        self.assertIn(option, line)
        self.assertIn("needs the {} extra".format(extra), line)
        self.assertIn("'.[{}]'".format(extra), line)

    def test_submissionTLSCertificate(self):
        """
        --submission with --smtp-tls-cert, without the tls extra, names it.
        """
        self.assertNeedsExtra(
            _TLS, "tls", "--smtp-tls-cert", "--submission", "tcp:0:interface=127.0.0.1",
            "--smtp-tls-cert", "cert.pem", "--passwords", self.mktemp())

    def test_pop3TLSCertificate(self):
        """
        --pop3-tls-cert without the tls extra names it.
        """
        self.assertNeedsExtra(
            _TLS, "tls", "--pop3-tls-cert", "--pop3", "tcp:0:interface=127.0.0.1",
            "--pop3-tls-cert", "cert.pem")

    def test_sslEndpoints(self):
        """
        An ssl: endpoint of --listen, --pop3 or --submission without the tls
        extra names it.
        """
        for option in ("--listen", "--pop3", "--submission", "--web"):
            self.assertNeedsExtra(
                _TLS, "tls", option, option,
                "ssl:0:interface=127.0.0.1:privateKey=k.pem:certKey=c.pem")

    def test_database(self):
        """
        --database without the postgresql extra names it.
        """
        self.assertNeedsExtra(
            "psycopg", "postgresql", "--database", "--database",
            "postgresql://mail@127.0.0.1/simplemail")
