"""
Tests for the spool's vectored write helper, L{records._writeAll}.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.stores.spool import records


class WriteAllTests(SynchronousTestCase):
    """
    L{records._writeAll} writes every byte, in order, at the offset given.
    """

    def setUp(self):
        self.path = self.mktemp()
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self.addCleanup(os.close, self.fd)

    def contents(self):
        with open(self.path, "rb") as f:
            return f.read()

    def test_oneCall(self):
        """
        Byte strings, byte arrays and empty pieces are written one after
        the other at the offset.
        """
        os.write(self.fd, b"0123")
        records._writeAll(self.fd, [b"ab", bytearray(b"cd"), b"", memoryview(b"ef")], 2)
        self.assertEqual(self.contents(), b"01abcdef")

    def test_partialWrites(self):
        """
        When the system writes only part of what is asked each time, the
        rest is written after it, nothing lost or doubled.
        """
        real = os.pwritev

        def few(fd, buffers, offset):
            data = b"".join(bytes(b) for b in buffers)[:3]
            return real(fd, [data], offset)

        self.patch(os, "pwritev", few)
        chunks = [b"hello ", b"", bytearray(b"partial"), b" world\n"]
        records._writeAll(self.fd, chunks, 0)
        self.assertEqual(self.contents(), b"hello partial world\n")

    def test_noProgress(self):
        """
        A write that makes no progress raises L{OSError} instead of looping.
        """
        self.patch(os, "pwritev", lambda fd, buffers, offset: 0)
        self.assertRaises(OSError, records._writeAll, self.fd, [b"data"], 0)
