"""
The web API's heavy pure work, done in a helper process when it is big.

Decoding a 10 MiB JSON body, building a 10 MiB message and encoding a view
of 2 x 10 MiB of text each hold the GIL for a tenth of a second or more: in
the reactor's process (even in a thread) that stalls every door.  So
above L{THRESHOLD} bytes the work is done by a helper process of a small
pool (C{python -m twisted_mail.doors.web.offload}, spawned by the reactor:
no fork of a process with threads, no import of twistd's C{__main__}),
and the reactor only moves bytes in and out, a piece at a time as the
pipe takes them: the big input and the big output cross as raw bytes (no
pickling, no joining: a 10 MiB copy costs the reactor several ms), only
the small rest is pickled.  Below it, the work is done in a thread of the
server's process: small requests pay no round trip, and unit tests spawn
nothing.

The functions run in the helper take the big input (L{bytes}) first, and
return only bytes, text, numbers, lists and dicts; a refusal is returned
as C{(False, text)}, never raised (an exception must survive pickling).
"""

import errno
import fcntl
import functools
import json
import os
import pickle
import struct
import sys

from twisted.internet import defer, main as _main, protocol
from twisted.logger import Logger

from twisted_mail import errors
from twisted_mail.doors.web.streams import Feeder, pieces, sizeOf
from twisted_mail.mail.message import buildMessageWithSubject
from twisted_mail.mail.mime import parseMessage, popSize
from twisted_mail.wire import normalizeUserId

log = Logger()

#: Work on inputs of at least this many bytes goes to the helper process.
THRESHOLD = 1024 * 1024

#: How much lower the helpers' CPU priority is than the server's.
NICENESS = 10

#: How many helper processes at most (each is busy with one request at a
#: time; more requests wait their turn).
POOL_SIZE = 2


def decodeBody(data, fields):
    """
    The request body C{data} as a JSON object whose C{fields} (name: (type
    name, required)) are checked.

    @return: C{(True, body)} or C{(False, the 400 answer's text)}.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False, "the request body is not UTF-8"
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return False, "the request body is not JSON"
    if not isinstance(body, dict):
        return False, "the request body must be a JSON object"
    kinds = {"str": str, "int": int, "bool": bool}
    for name, (kindName, required) in fields.items():
        kind = kinds[kindName]
        if name not in body or body[name] is None:
            if required:
                return False, "{} is required".format(name)
            continue
        value = body[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            return False, "{} must be a {}".format(
                name, {str: "string", bool: "boolean"}.get(kind, kind.__name__))
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return False, "{} is not valid Unicode".format(name)
    return True, body


def composeFromBody(data, fields, userid, receiver, domain, when, messageId):
    """
    Decode a message's request body (L{decodeBody}) and build the message
    it asks for, in one step: a big text never crosses between processes
    as text, only the body in and the message out, as bytes.

    @param userid: the logged-in user, or L{None}: the sender when the
        body names none.
    @return: C{(False, the 400 answer's text)}, or C{(True, result)} where
        C{result} holds the body's C{from} and C{subject}, the text's
        C{length} (characters), and the C{message} (L{bytes}) built from
        C{from} (else C{userid}) normalised, or L{None} when that is not a
        valid user id (the caller refuses it).
    """
    ok, body = decodeBody(data, fields)
    if not ok:
        return ok, body
    text = body["text"]
    subject = body.get("subject") or ""
    message = None
    try:
        sender = normalizeUserId(body.get("from") or userid)
    except (errors.InvalidUserId, TypeError, AttributeError):
        pass
    else:
        message = buildMessageWithSubject(sender, receiver, subject, text, domain, when,
                                          messageId)
    return True, {"from": body.get("from"), "subject": subject, "length": len(text),
                  "message": message, "keepCopy": bool(body.get("keepCopy"))}


def messageView(msgid, size, message, placement=None):
    """
    The JSON of one message: the summary fields, its headers, text, HTML
    and parts; with C{placement}, C{(folder, flags)} from the store, its
    folder and flags too.
    """
    fields = message.summaryFields()
    view = {
        "id": msgid,
        "from": fields["sender"],
        "to": fields["to"],
        "subject": fields["subject"],
        "date": fields["date"],
        "size": size,
        "snippet": fields["snippet"],
        "attachments": fields["attachments"],
        "headers": [[name, value] for name, value in message.headers],
        "text": message.text,
        "html": message.html,
        "parts": [part.asDict() for part in message.parts],
    }
    if placement is not None:
        view["folder"], view["flags"] = placement[0], list(placement[1])
    return view


def messageViewJSON(text, msgid, placement=None):
    """
    The JSON (ASCII bytes) of L{messageView} of message C{msgid} whose
    stored text is C{text}: reading it and encoding the view, both.
    """
    view = messageView(msgid, popSize(text), parseMessage(text), placement)
    return json.dumps(view).encode("ascii")


def messageHTML(text):
    """
    The HTML part of message C{text} as UTF-8 (what the page's sandboxed
    frame shows), or L{None} when it has none.
    """
    html = parseMessage(text).html
    return None if html is None else html.encode("utf-8", "replace")


def messagePart(text, number):
    """
    Part C{number} of message C{text}: C{[{"contentType", "filename"},
    its decoded content]}, or L{None} when it has no such part.
    """
    for part in parseMessage(text).parts:
        if part.part == number:
            return [{"contentType": part.contentType, "filename": part.filename},
                    part.content()]
    return None


#: The functions a helper runs, by name: each with where its big output
#: is in its result (crossing back as raw bytes), or L{None}.
FUNCTIONS = {
    "decodeBody": (decodeBody, None),
    "composeFromBody": (composeFromBody, (1, "message")),
    "messageViewJSON": (messageViewJSON, ()),
    "messageHTML": (messageHTML, ()),
    "messagePart": (messagePart, (1,)),
}

_LENGTH = struct.Struct(">Q")


def _takeRaw(value, path):
    """
    Take the L{bytes} at C{path} (keys from C{value} down; C{()}: C{value}
    itself) out of C{value}.

    @return: C{(value without it, the bytes or None)}.
    """
    if path is None:
        return value, None
    if path == ():
        return (None, value) if isinstance(value, bytes) else (value, None)
    try:
        container = value
        for key in path[:-1]:
            container = container[key]
        raw = container[path[-1]]
    except (TypeError, KeyError, IndexError):
        return value, None
    if not isinstance(raw, bytes):
        return value, None
    container[path[-1]] = None
    return value, raw


def _putRaw(value, path, raw):
    """
    Put C{raw} back where L{_takeRaw} took it.
    """
    if path == ():
        return raw
    container = value
    for key in path[:-1]:
        container = container[key]
    container[path[-1]] = raw
    return value


class HelperError(Exception):
    """
    The helper process failed to do the work (or died); the request gets a
    500 and the log says why.
    """


class _Helper(protocol.ProcessProtocol):
    """
    One helper process (C{python -m twisted_mail.doors.web.offload}), one
    call at a time.  A call is, on its standard input, a length-prefixed
    pickle of C{(function name, input size, other arguments)} and then the
    input, raw; the answer, on its standard output, a length-prefixed
    pickle of C{(ok, value, raw path, raw size)} and then the raw bytes
    that go at C{raw path} in C{value} (see L{_takeRaw}).  The raw answer
    reaches the caller as the L{list} of pieces it arrived in.
    """

    def __init__(self, pool):
        self.pool = pool
        self.waiting = None
        self._chunks = []
        self._have = 0
        self._header = None
        self.ended = False
        self.whenEnded = defer.Deferred()

    def call(self, name, source, size, args):
        self.waiting = defer.Deferred()
        data = pickle.dumps((name, size, args), protocol=pickle.HIGHEST_PROTOCOL)
        self.transport.write(_LENGTH.pack(len(data)) + data)
        Feeder(self.transport, pieces(source), lambda transport: None).start()
        return self.waiting

    def outReceived(self, data):
        while data:
            if self._header is None:
                data = self._headerReceived(data)
            else:
                data = self._rawReceived(data)

    def _headerReceived(self, data):
        self._chunks.append(data)
        self._have += len(data)
        if self._have < _LENGTH.size:
            return b""
        head = b"".join(self._chunks)
        need = _LENGTH.size + _LENGTH.unpack_from(head)[0]
        if len(head) < need:
            self._chunks = [head]
            return b""
        self._header = pickle.loads(memoryview(head)[_LENGTH.size:need])
        self._chunks, self._have = [], 0
        rest = head[need:]
        if self._header[3] == 0:
            self._answer()
        return rest

    def _rawReceived(self, data):
        left = self._header[3] - self._have
        piece, rest = (data, b"") if len(data) <= left else (data[:left], data[left:])
        self._chunks.append(piece)
        self._have += len(piece)
        if self._have == self._header[3]:
            self._answer()
        return rest

    def _answer(self):
        (ok, value, path, size), raw = self._header, self._chunks
        self._header, self._chunks, self._have = None, [], 0
        d, self.waiting = self.waiting, None
        if not ok:
            d.errback(HelperError(value))
        elif path is not None:
            d.callback(_putRaw(value, path, raw))
        else:
            d.callback(value)

    def errReceived(self, data):
        log.warn("web helper process: {text}",
                 text=data.decode("utf-8", "replace").rstrip()[-2000:])

    def processEnded(self, reason):
        self.ended = True
        self.pool._ended(self)
        d, self.waiting = self.waiting, None
        if d is not None:
            d.errback(HelperError("the helper process ended: {}".format(reason.value)))
        self.whenEnded.callback(None)


#: How much one read of a helper's answer takes at most.
READ_SIZE = 256 * 1024

#: The pipe buffer asked for (Linux's F_SETPIPE_SZ), so that a read can get
#: that much.
_SETPIPE_SZ = 1031


def _readInBigPieces(transport):
    """
    Read the helper's answers from its standard output up to L{READ_SIZE}
    bytes at a time: Twisted's process reader takes 8 KiB a turn, so a 21
    MiB view would cost the reactor 2,700 turns.  (A process transport
    without the POSIX reader, or a test's, is left as it is.)
    """
    reader = getattr(transport, "pipes", {}).get(1)
    if reader is None or not isinstance(getattr(reader, "fd", None), int):
        return
    try:
        fcntl.fcntl(reader.fd, _SETPIPE_SZ, READ_SIZE)
    except OSError:
        pass
    reader.doRead = functools.partial(_readMore, reader)


def _readMore(reader):
    """
    C{reader.doRead}, as L{twisted.internet.fdesc.readFromFD} with a larger
    read.
    """
    try:
        data = os.read(reader.fd, READ_SIZE)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EINTR):
            return None
        return _main.CONNECTION_LOST
    if not data:
        return _main.CONNECTION_DONE
    reader.dataReceived(data)


class Offloader:
    """
    Runs a function of this module at once or, for a big input, in one of
    at most L{POOL_SIZE} helper processes (started at first need, each
    kept for the next call, ended when the reactor stops).

    @param reactor: the reactor that spawns the helpers.
    @param inThread: C{inThread(f, *args)} runs small work in a thread,
        giving a L{Deferred}; L{None}: at once.
    """

    def __init__(self, reactor, inThread=None):
        self._reactor = reactor
        self._inThread = inThread
        self._idle = []
        self._all = set()
        self._slots = defer.DeferredSemaphore(POOL_SIZE)
        self._stopping = False

    def run(self, f, source, *args):
        """
        C{f(data, *args)}, where C{data} is the big input C{source} (as for
        L{twisted_mail.doors.web.streams.pieces}: L{bytes} or a binary
        file), in a helper process when it holds at least L{THRESHOLD}
        bytes, else in a thread (or at once, without C{inThread}).  From
        a helper, the raw part of the result (see L{FUNCTIONS}) comes back
        as a L{list} of L{bytes}, the pieces it arrived in.

        @return: a L{Deferred} firing with the result.
        """
        size = sizeOf(source)
        if size < THRESHOLD:
            if not isinstance(source, bytes):
                source = b"".join(pieces(source))
            if self._inThread is not None:
                return self._inThread(f, source, *args)
            return defer.maybeDeferred(f, source, *args)
        return self._slots.run(self._call, f.__name__, source, size, args)

    def _call(self, name, source, size, args):
        helper = self._idle.pop() if self._idle else self._spawn()

        def done(result):
            if not helper.ended:
                self._idle.append(helper)
            return result

        return helper.call(name, source, size, args).addBoth(done)

    def _spawn(self):
        if not self._all:
            self._reactor.addSystemEventTrigger("before", "shutdown", self.close)
        helper = _Helper(self)
        transport = self._reactor.spawnProcess(
            helper, sys.executable, [sys.executable, "-m", __name__], env=None)
        _readInBigPieces(transport)
        self._all.add(helper)
        return helper

    def _ended(self, helper):
        self._all.discard(helper)
        if helper in self._idle:
            self._idle.remove(helper)

    def close(self):
        """
        End the helper processes (they exit at the end of their input).

        @return: a L{Deferred} firing once they have.
        """
        helpers = list(self._all)
        for helper in helpers:
            helper.transport.closeStdin()
        return defer.DeferredList([helper.whenEnded for helper in helpers])


def main():
    """
    A helper process: answer calls on standard input until it ends.
    """
    # Batch work: the server's reactor comes first for the CPU.
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError):
        pass
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        name, size, args = pickle.loads(stdin.read(_LENGTH.unpack(head)[0]))
        data = stdin.read(size)
        if len(data) < size:
            return
        raw, path = None, None
        try:
            f, path = FUNCTIONS[name]
            value, raw = _takeRaw(f(data, *args), path)
            if raw is None:
                answer = (True, value, None, 0)
            else:
                answer = (True, value, path, len(raw))
        except Exception as e:
            answer = (False, "{}: {}".format(type(e).__name__, e), None, 0)
            raw = None
        del data
        header = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_LENGTH.pack(len(header)))
        stdout.write(header)
        if raw:
            stdout.write(raw)
        stdout.flush()


if __name__ == "__main__":
    main()
