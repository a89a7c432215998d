"""
The web API's heavy pure work, done in a helper process when it is big.

Decoding a 10 MiB JSON body, building a 10 MiB message and encoding a view
of 2 x 10 MiB of text each hold the GIL for a tenth of a second or more: in
the reactor's process (even in a thread) that stalls every door.  So
above L{THRESHOLD} bytes the work is done by a helper process of a small
pool (C{python -m twisted_mail.doors.web.offload}, spawned by the reactor:
no fork of a process with threads, no import of twistd's C{__main__}),
and the reactor only copies bytes in and out, a pipe's buffer at a time.  Below it, the work is done at once in the reactor's process: small
requests pay no round trip, and unit tests spawn nothing.

The functions run in the helper take and return only bytes, text, numbers,
lists and dicts; a refusal is returned as C{(False, text)}, never raised
(an exception must survive pickling).
"""

import json
import pickle
import struct
import sys

from twisted.internet import defer, protocol
from twisted.logger import Logger

from twisted_mail import errors
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


def messageViewJSON(msgid, text, placement=None):
    """
    The JSON (ASCII bytes) of L{messageView} of message C{msgid} whose
    stored text is C{text}: reading it and encoding the view, both.
    """
    view = messageView(msgid, popSize(text), parseMessage(text), placement)
    return json.dumps(view).encode("ascii")


#: The functions a helper runs, by name.
FUNCTIONS = {}


def _register(f):
    FUNCTIONS[f.__name__] = f
    return f


for _f in (decodeBody, composeFromBody, messageViewJSON):
    _register(_f)

_LENGTH = struct.Struct(">Q")


class HelperError(Exception):
    """
    The helper process failed to do the work (or died); the request gets a
    500 and the log says why.
    """


class _Helper(protocol.ProcessProtocol):
    """
    One helper process (C{python -m twisted_mail.doors.web.offload}): a
    call is its function's name and arguments, pickled, length-prefixed, on
    its standard input; the answer comes the same way on its standard
    output.  One call at a time.
    """

    def __init__(self, pool):
        self.pool = pool
        self.waiting = None
        self._chunks = []
        self._have = 0
        self._need = None
        self.ended = False
        self.whenEnded = defer.Deferred()

    def call(self, name, args):
        self.waiting = defer.Deferred()
        data = pickle.dumps((name, args), protocol=pickle.HIGHEST_PROTOCOL)
        self.transport.write(_LENGTH.pack(len(data)))
        self.transport.write(data)
        return self.waiting

    def outReceived(self, data):
        self._chunks.append(data)
        self._have += len(data)
        if self._need is None and self._have >= _LENGTH.size:
            head = b"".join(self._chunks)
            self._chunks = [head]
            self._need = _LENGTH.size + _LENGTH.unpack_from(head)[0]
        if self._need is not None and self._have >= self._need:
            data = b"".join(self._chunks)
            self._chunks, self._have, self._need = [], 0, None
            ok, value = pickle.loads(memoryview(data)[_LENGTH.size:])
            d, self.waiting = self.waiting, None
            if ok:
                d.callback(value)
            else:
                d.errback(HelperError(value))

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


class Offloader:
    """
    Runs a function of this module at once or, for a big input, in one of
    at most L{POOL_SIZE} helper processes (started at first need, each
    kept for the next call, ended when the reactor stops).

    @param reactor: the reactor that spawns the helpers.
    """

    def __init__(self, reactor):
        self._reactor = reactor
        self._idle = []
        self._all = set()
        self._slots = defer.DeferredSemaphore(POOL_SIZE)
        self._stopping = False

    def run(self, size, f, *args):
        """
        C{f(*args)}, in a helper process when C{size} (the input's bytes)
        is at least L{THRESHOLD}.

        @return: a L{Deferred} firing with the result.
        """
        if size < THRESHOLD:
            return defer.maybeDeferred(f, *args)
        return self._slots.run(self._call, f.__name__, args)

    def _call(self, name, args):
        helper = self._idle.pop() if self._idle else self._spawn()

        def done(result):
            if not helper.ended:
                self._idle.append(helper)
            return result

        return helper.call(name, args).addBoth(done)

    def _spawn(self):
        import sys

        if not self._all:
            self._reactor.addSystemEventTrigger("before", "shutdown", self.close)
        helper = _Helper(self)
        self._reactor.spawnProcess(
            helper, sys.executable, [sys.executable, "-m", __name__], env=None)
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
    import os

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
        name, args = pickle.loads(stdin.read(_LENGTH.unpack(head)[0]))
        try:
            answer = (True, FUNCTIONS[name](*args))
        except Exception as e:
            answer = (False, "{}: {}".format(type(e).__name__, e))
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_LENGTH.pack(len(data)))
        stdout.write(data)
        stdout.flush()


if __name__ == "__main__":
    main()
