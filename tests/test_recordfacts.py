"""
Tests for reading a record's facts (content key, id, UID, flags) the quick
way, for records in the shape the spool writes.
"""

import hashlib

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.stores.spool import records
from twisted_mail.stores.spool.flags import flagLines, parseHeader, storeLines

SEPARATOR = b"From alice@localhost Sun Dec  6 11:00:00 2026\n"
ID = b"X-Simplemail-Id: abcDEF_123-x\n"
MESSAGE = b"From: alice@localhost\nTo: bob@localhost\nSubject: hi\n\nbody\n>From here\n\n"


def slowFacts(record):
    header = parseHeader(record)
    return (records._messageKey(record, header), records.recordId(record), header.uid,
            header.flags)


class StoreWrittenFactsTests(SynchronousTestCase):
    """
    L{records._facts} gives the same facts with or without its quick path.
    """

    def check(self, record, quick):
        """
        The facts of C{record} equal the header parser's; C{quick}: whether
        the quick path takes it.
        """
        self.assertEqual(records._facts(record), slowFacts(record))
        self.assertEqual(records._storeWrittenFacts(record) is not None, quick)

    def test_delivery(self):
        """
        A delivery as the store writes it is read without parsing, with the
        same key, id, UID and flags.
        """
        self.check(SEPARATOR + ID + storeLines(42, frozenset()) + MESSAGE, True)

    def test_flagged(self):
        """
        Flags in the store's lines are read the same.
        """
        lines = b"X-UID: 7\n" + flagLines(frozenset({"\\Seen", "\\Flagged", "work"}))
        self.check(SEPARATOR + ID + lines + MESSAGE, True)

    def test_doubtful(self):
        """
        A store field again further on, a folded line after the store's
        lines, a CR in the header, another field order or an out-of-range
        UID: the facts are still the header parser's.
        """
        lines = storeLines(9, frozenset())
        for record, quick in [
            (SEPARATOR + ID + lines + b"Status: RO\n" + MESSAGE, False),
            (SEPARATOR + ID + lines + b"Content-Length: 5\n" + MESSAGE, False),
            (SEPARATOR + ID + lines + b" folded\n" + MESSAGE, False),
            (SEPARATOR + ID + lines + MESSAGE.replace(b"\n", b"\r\n", 2), False),
            (SEPARATOR + ID + flagLines(frozenset()) + b"X-UID: 3\n" + MESSAGE, False),
            (SEPARATOR + ID + storeLines(0, frozenset()) + MESSAGE, True),
            (SEPARATOR + ID + storeLines(9999999999, frozenset()) + MESSAGE, True),
            (SEPARATOR + lines + MESSAGE, False),
            (SEPARATOR + ID + lines + b"\n", True),
            (SEPARATOR + ID + lines, True),
        ]:
            self.check(record, quick)

    def test_storedKey(self):
        """
        L{records.storedKey} is the record's content key, quick path or not.
        """
        for record in [
            SEPARATOR + ID + storeLines(42, frozenset()) + MESSAGE,
            SEPARATOR + ID + storeLines(42, frozenset()) + b"Lines: 3\n" + MESSAGE,
            SEPARATOR + MESSAGE,
        ]:
            self.assertEqual(records.storedKey(record), records._messageKey(record))


class ChunksKeyTests(SynchronousTestCase):
    """
    The key of a record given in pieces (L{records._chunksKey}).
    """

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.one_of(
        st.binary(max_size=8),
        st.sampled_from([b"", b"\n", b"\n\n", b"x\n", b"\n" * 70, b"y" + b"\n" * 70]),
    ), max_size=6), st.sampled_from([bytes, bytearray, memoryview]))
    def test_sameAsWhole(self, pieces, kind):
        """
        However a record is cut into pieces (of any byte-string type), its
        key is the hash of the whole but for the line feeds that end it.
        """
        whole = b"".join(pieces).rstrip(b"\n")
        self.assertEqual(
            records._chunksKey([kind(p) for p in pieces]),
            hashlib.blake2b(whole, digest_size=16).digest(),
        )


class FlagsOfTests(SynchronousTestCase):
    """
    L{flags.flagsOf} remembers its answers by the lines' values.
    """

    def test_rememberedAnswersAreRight(self):
        """
        Asked again for the same values, flagsOf gives the same flags as
        reading them afresh, as the one shared set; values it has not met
        are read afresh.
        """
        from twisted_mail.stores.spool import flags

        self.patch(flags, "_FLAGS_OF", {})
        self.patch(flags, "_SHARED", {flags.NO_FLAGS: flags.NO_FLAGS})
        cases = [(b"", b"", b""), (b"RO", b"", b""), (b"O", b"AF", b"work $Label1"),
                 (b"R", b"D", b"a,b  c"), (b"", b"T", b"\xff bad")]
        for _ in range(3):
            for case in cases:
                self.assertEqual(flags.flagsOf(*case), flags._flagsOf(*case))
                self.assertIs(flags.flagsOf(*case), flags.flagsOf(*case))
        self.assertEqual(flags.flagsOf(b"RO", b"F", b""),
                         frozenset([flags.SEEN, flags.FLAGGED]))

    def test_bounded(self):
        """
        It remembers at most as many answers as it shares flag sets: a
        mailbox of ever new keywords does not grow it.
        """
        from twisted_mail.stores.spool import flags

        self.patch(flags, "_FLAGS_OF", {})
        self.patch(flags, "_SHARED", {flags.NO_FLAGS: flags.NO_FLAGS})
        for n in range(flags._SHARED_MAX + 50):
            self.assertEqual(flags.flagsOf(b"", b"", b"k%d" % (n,)), frozenset(["k%d" % (n,)]))
        self.assertLessEqual(len(flags._FLAGS_OF), flags._SHARED_MAX)
