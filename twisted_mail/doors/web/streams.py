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


def stream(request, data):
    """
    Write C{data} as the body, a piece at a time as the connection takes
    it (a pull producer over a view of it: no copy of a large message).
    """
    if request._disconnected:
        return
    request.setHeader(b"content-length", str(len(data)).encode("ascii"))
    if request.method == b"HEAD":
        request.finish()
        return
    _ViewProducer(request, data).start()


class _ViewProducer:
    """
    Writes a L{bytes} body to a request in 64 KiB slices while the
    connection takes them (a push producer: the transport pauses it when
    its buffer is full and resumes it when it drains).
    """

    chunk = 64 * 1024

    def __init__(self, request, data):
        self.request = request
        self.view = memoryview(data)
        self.offset = 0
        self.paused = False

    def start(self):
        self.request.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        while not self.paused and self.request is not None:
            if self.offset < len(self.view):
                piece = self.view[self.offset : self.offset + self.chunk]
                self.offset += len(piece)
                self.request.write(bytes(piece))
            else:
                request, self.request = self.request, None
                self.view = None
                request.unregisterProducer()
                request.finish()

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.request = None
        self.view = None


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
