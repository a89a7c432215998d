"""
The records of an mbox file: finding them (scanning), naming them (content
keys, the ids of messages without an id line) and writing byte chunks.
Synchronous helpers of L{twisted_mail.stores.spool.mboxfile}, for the mailbox thread.
"""

import base64
import errno
import hashlib
import os
import re

from twisted_mail.mail.message import recordId
from twisted_mail.stores.spool.flags import NO_FLAGS, flagsOf, keyedOut, parseHeader

_READ_CHUNK = 1 << 20
_UNKEYED_FIELD = re.compile(
    rb"\n(?:x-uid|status|x-status|x-keywords|x-imapbase|x-imap|content-length|lines)"
    rb"[ \t]*:", re.IGNORECASE)
#: A record as the store writes it: separator, id line, then the store's
#: lines in their order (L{twisted_mail.stores.spool.flags.storeLines}).
_STORE_WRITTEN = re.compile(
    rb"From [^\n]*\nX-Simplemail-Id: [^\n]*\nX-UID: ([0-9]{1,10})\n"
    rb"Status:([^\n]*)\nX-Status:([^\n]*)\nX-Keywords:([^\n]*)\n")
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


def _messageKey(record, header=None):
    """
    The identity of a stored message: a digest of its bytes without the
    store's lines (its flags, its UID: see
    L{twisted_mail.stores.spool.flags}), ignoring the blank lines that end
    it (they change when another tool appends).  Flag changes, and mutt's
    rewrites, keep it; for mail written before flags were kept it is what
    it was.
    """
    if header is None:
        header = parseHeader(record)
    return _chunksKey(_keyedPieces(record, header))


def _keyedPieces(data, header):
    """
    C{data} without the lines its key leaves out, as memoryview pieces.
    """
    view = memoryview(data)
    pieces = []
    pos = 0
    for s, e, _ in keyedOut(header):
        pieces.append(view[pos:s])
        pos = e
    pieces.append(view[pos:])
    return pieces


def recordKey(chunks, storeLines=None):
    """
    L{_messageKey} of a record given in pieces (as written), without joining
    its body.

    @param storeLines: the index of the piece that is the store's lines (as
        L{MboxFile.append} writes them), or L{None}.
    """
    if storeLines is not None:
        chunks = chunks[:storeLines] + chunks[storeLines + 1:]
    head = b""
    i = 0
    while i < len(chunks) and b"\n\n" not in head and len(head) < (1 << 20):
        head += bytes(chunks[i])
        i += 1
    end = head.find(b"\n\n")
    if end == -1:
        end = len(head)
    else:
        end += 2
    if not _UNKEYED_FIELD.search(head, 0, end):
        # Nothing to leave out (the common case: the store's own lines
        # were a piece of their own).
        return _chunksKey(chunks)
    header = parseHeader(head, end)
    return _chunksKey(_keyedPieces(head, header) + list(chunks[i:]))


def _chunksKey(chunks):
    """
    L{_messageKey} of the concatenation of C{chunks}, without making it:
    the hash of its bytes but for the line feeds that end it.
    """
    # Where the key's bytes end: after the last byte that is not a line
    # feed (in the last piece but for empty and all-LF ones).
    end = len(chunks)
    cut = 0
    while end:
        last = chunks[end - 1]
        size = len(last)
        if size and last[size - 1] != 0x0A:
            break
        if size:
            tail = bytes(last[-64:])
            newlines = len(tail) - len(tail.rstrip(b"\n"))
            if newlines == len(tail):
                while newlines < size and last[size - 1 - newlines] == 0x0A:
                    newlines += 1
            if newlines < size:
                cut = newlines
                break
        end -= 1
    digest = hashlib.blake2b(digest_size=16)
    if end:
        for chunk in chunks[: end - 1]:
            digest.update(chunk)
        last = chunks[end - 1]
        digest.update(memoryview(last)[: len(last) - cut] if cut else last)
    return digest.digest()


class _Entry:
    __slots__ = ("start", "end", "key", "serial", "deleted", "msgid", "uid", "flags",
                 "derived")

    def __init__(self, start, end, key, serial, msgid=None, uid=0, flags=NO_FLAGS):
        self.start = start
        self.end = end
        self.key = key
        self.serial = serial
        self.deleted = False
        # Its UID and flags, from the record's store lines (0: none yet).
        self.uid = uid
        self.flags = flags
        # Whether the id was derived from its bytes (no id line yet).
        self.derived = False
        # The stable id: from the record's id header, else derived from its
        # bytes when it is indexed (see MboxFile._add).
        self.msgid = msgid


# A file's entries by content key (C{_byKey}): the entry, or a list of the
# entries for a key more than one has (byte-identical copies).  A list for
# each was an object more per message for the garbage collector's full
# collections, which stop every thread.

def _key(byKey, entry):
    found = byKey.get(entry.key)
    if found is None:
        byKey[entry.key] = entry
    elif type(found) is list:
        found.append(entry)
    else:
        byKey[entry.key] = [found, entry]


def _unkey(byKey, entry):
    found = byKey[entry.key]
    if type(found) is not list:
        if found is not entry:
            raise ValueError("not the entry of its key")
        del byKey[entry.key]
        return
    found.remove(entry)
    if len(found) == 1:
        byKey[entry.key] = found[0]


def keyed(byKey, key):
    """
    The entries of C{byKey} with content key C{key}, in file order.
    """
    found = byKey.get(key)
    if found is None:
        return ()
    return found if type(found) is list else (found,)


def contentId(key, taken):
    """
    The stable id of a message another program wrote (it has no id header):
    C{c} and 16 characters of its content digest, with C{-2}, C{-3}... for
    byte-identical copies.  Ids we write are 16 characters, so the two kinds
    never meet.

    @param taken: a container of the ids in use.
    """
    base = "c" + base64.urlsafe_b64encode(key[:12]).decode("ascii")
    msgid = base
    n = 1
    while msgid in taken:
        n += 1
        msgid = "{}-{}".format(base, n)
    return msgid


def _facts(record):
    """
    The key, id, UID and flags of a record read from the file.
    """
    facts = _storeWrittenFacts(record)
    if facts is not None:
        return facts
    header = parseHeader(record)
    return _messageKey(record, header), recordId(record), header.uid, header.flags


def storedKey(record):
    """
    L{_messageKey} of a record read from the file (quickly when it is in
    the store's own shape).
    """
    facts = _storeWrittenFacts(record)
    return _messageKey(record) if facts is None else facts[0]


def _storeWrittenFacts(record):
    """
    L{_facts} without parsing the header, for a record in the shape the
    store writes (what another simplemail process sharing the spool
    appended: with C{--workers}, each worker reads every other's
    deliveries); L{None} for any other, or when in doubt (a store field
    again further on, a folded line, a CR in the header).
    """
    match = _STORE_WRITTEN.match(record)
    if match is None:
        return None
    end = match.end()
    headerEnd = record.find(b"\n\n", end - 1)
    if headerEnd == -1:
        headerEnd = len(record)
    if (
        record[end:end + 1] in (b" ", b"\t")
        or record.find(b"\r", 0, headerEnd) != -1
        or _UNKEYED_FIELD.search(record, end - 1, headerEnd) is not None
    ):
        return None
    uid = int(match.group(1))
    view = memoryview(record)
    key = _chunksKey([view[:match.start(1) - len(b"X-UID: ")], view[end:]])
    flags = flagsOf(match.group(2).strip(), match.group(3).strip(), match.group(4).strip())
    return key, recordId(record), uid if 0 < uid < 2 ** 32 else 0, flags


def scanRecords(fd, start, end):
    """
    Find the messages in C{[start, end)} of the file; C{start} is at a
    separator or at the start of the file.  Text before the first
    separator is not a message: it is kept in the file, never shown.

    @return: a L{list} of C{(start, end, key, id, uid, flags)}, the id
        L{None} for a record without an id header, the uid 0 for one
        without an X-UID.
    """
    found = []
    # From the start of the message being read.  A bytearray: appending
    # a chunk and dropping a read message from the front don't copy the
    # rest, so a huge message is scanned in linear time.
    buf = bytearray()
    bufStart = start
    searchAt = 0
    pos = start
    while pos < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - pos), pos)
        if not chunk:
            break
        pos += len(chunk)
        buf += chunk
        messageStart = 0
        while True:
            i = buf.find(b"\nFrom ", searchAt)
            if i == -1:
                break
            cut = i + 1
            record = bytes(buf[messageStart:cut])
            if record.startswith(b"From "):
                found.append((bufStart + messageStart, bufStart + cut) + _facts(record))
            messageStart = searchAt = cut
        if messageStart:
            del buf[:messageStart]
            bufStart += messageStart
        searchAt = max(0, len(buf) - 5)
    if buf.startswith(b"From "):
        record = bytes(buf)
        found.append((bufStart, bufStart + len(buf)) + _facts(record))
    return found


def _head(chunks, n=32):
    """
    The first C{n} bytes of the concatenation of C{chunks}.
    """
    head = b""
    for chunk in chunks:
        head += bytes(chunk[: n - len(head)])
        if len(head) >= n:
            break
    return head


def _tailBytes(chunks, n):
    """
    The last C{n} bytes of the concatenation of C{chunks}.
    """
    tail = b""
    for chunk in reversed(chunks):
        tail = bytes(chunk[-(n - len(tail)):]) + tail
        if len(tail) >= n:
            break
    return tail


def _writeAll(fd, chunks, offset):
    """
    Write byte strings one after the other at C{offset}, with as few system
    calls as the platform allows, going on after partial writes.
    """
    written = 0
    if len(chunks) <= _IOV_MAX:
        # The usual case, one call that writes it all: no views made.
        written = os.pwritev(fd, chunks, offset)
        if written == sum(map(len, chunks)):
            return
    pending = [memoryview(c) for c in chunks if len(c)]
    i = 0
    n = written
    while True:
        offset += n
        while n:
            size = len(pending[i])
            if n >= size:
                n -= size
                i += 1
            else:
                pending[i] = pending[i][n:]
                n = 0
        if i >= len(pending):
            return
        n = os.pwritev(fd, pending[i : i + _IOV_MAX], offset)
        if n == 0:
            raise OSError(errno.EIO, "write made no progress")
