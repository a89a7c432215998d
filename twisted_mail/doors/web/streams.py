"""
The answers written a piece at a time: a large body (a raw message, an
attachment) as the connection takes it, and the endless event stream of
changes to a user's mail.
"""

import json

from twisted.internet import task

#: Seconds between the comments that keep an event stream open.
KEEPALIVE = 15.0


class _Handled:
    """
    A handler's result when it has written (or is writing) the answer
    itself.
    """


HANDLED = _Handled()


#: The most a producer writes at once (a slice of the data, copied).
CHUNK = 64 * 1024


def pieces(source, size=CHUNK):
    """
    The data of C{source} in pieces of at most C{size} bytes, as views
    (no copy of a large body): C{source} is L{bytes}, a L{list} of
    L{bytes} (an answer as it arrived from a helper process), or a binary
    file, read from its start (a request body twisted.web kept in a
    temporary file).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = [source]
    if isinstance(source, list):
        for item in source:
            view = memoryview(item)
            for offset in range(0, len(view), size):
                yield view[offset:offset + size]
        return
    source.seek(0)
    while True:
        piece = source.read(size)
        if not piece:
            return
        yield piece


def sizeOf(source):
    """
    How many bytes L{pieces} gives of C{source}.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source)
    if isinstance(source, list):
        return sum(len(item) for item in source)
    source.seek(0, 2)
    return source.tell()


def stream(request, data):
    """
    Write C{data} (as for L{pieces}) as the body, a piece at a time as the
    connection takes it (no copy of a large message, and no long write on
    the reactor).
    """
    if request._disconnected:
        return
    request.setHeader(b"content-length", str(sizeOf(data)).encode("ascii"))
    if request.method == b"HEAD":
        request.finish()
        return
    Feeder(request, pieces(data), lambda request: request.finish()).start()


class Feeder:
    """
    Writes pieces to a consumer (a request, a helper process's standard
    input) while it takes them: a push producer, paused by the transport
    when its buffer is full and resumed when it drains, so one reactor
    turn copies one piece or a few, never the whole.

    @param consumer: an L{IConsumer} that has no producer.
    @param pieces: an iterator of L{bytes} or views.
    @param finished: called with the consumer once the last piece is
        written (and the producer unregistered); not if the consumer
        stopped it first.
    """

    def __init__(self, consumer, pieces, finished):
        self.consumer = consumer
        self.pieces = pieces
        self.finished = finished
        self.paused = False

    def start(self):
        self.consumer.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        while not self.paused and self.consumer is not None:
            piece = next(self.pieces, None)
            if piece is None:
                consumer, self.consumer = self.consumer, None
                self.pieces = None
                consumer.unregisterProducer()
                self.finished(consumer)
            else:
                self.consumer.write(bytes(piece))

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.consumer = None
        self.pieces = None


class EventStream:
    """
    One C{text/event-stream} answer, from the store's C{watch}: for each
    change to the user's mail an event whose C{data:} is JSON:

      - C{message}: a new message (in any folder), its summary;
      - C{flags}: a message's flags changed, its summary as it is now;
      - C{expunge}: a message is gone from a folder, C{{"id", "folder"}};
      - C{folders}: folders were created, renamed or deleted, C{{}}.

    A comment every L{KEEPALIVE} seconds; the watch ends when the client
    goes.
    """

    def __init__(self, store, userid, request, reactor, summaryDict):
        self.store = store
        self.userid = userid
        self.request = request
        self.reactor = reactor
        self._summaryDict = summaryDict
        self._unsubscribe = None
        self._keepalive = None

    def start(self):
        request = self.request
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b"retry: 2000\n: connected\n\n")
        self._unsubscribe = self.store.watch(self.userid, self.announce)
        self._keepalive = task.LoopingCall(self.ping)
        self._keepalive.clock = self.reactor
        self._keepalive.start(KEEPALIVE, now=False)
        request.notifyFinish().addBoth(self.stop)
        return HANDLED

    def announce(self, event):
        if self.request is None:
            return
        if event.kind in ("message", "flags") and event.summary is not None:
            data = self._summaryDict(event.summary)
        elif event.kind == "expunge":
            data = {"id": event.msgid, "folder": event.folder}
        elif event.kind == "folders":
            data = {}
        else:
            return
        lines = "event: {}\n".format(event.kind)
        if event.msgid is not None:
            lines += "id: {}\n".format(event.msgid)
        # ensure_ascii (the default): a folder name can't break the framing.
        lines += "data: {}\n\n".format(json.dumps(data))
        self.request.write(lines.encode("ascii"))

    def ping(self):
        if self.request is not None:
            self.request.write(b": keep-alive\n\n")

    def stop(self, _):
        self.request = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None
