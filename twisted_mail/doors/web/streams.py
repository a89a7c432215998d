"""
The answers written a piece at a time: a large body (a raw message, an
attachment) as the connection takes it, and the endless event stream of
new mail.
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
    One C{text/event-stream} answer: an C{event: message} with the summary
    JSON for each new message of the user, a comment every L{KEEPALIVE}
    seconds, the subscription ended when the client goes.
    """

    def __init__(self, store, userid, request, reactor):
        self.store = store
        self.userid = userid
        self.request = request
        self.reactor = reactor
        self._unsubscribe = None
        self._keepalive = None

    def start(self):
        request = self.request
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b"retry: 2000\n: connected\n\n")
        self._unsubscribe = self.store.subscribe(self.userid, self.announce)
        self._keepalive = task.LoopingCall(self.ping)
        self._keepalive.clock = self.reactor
        self._keepalive.start(KEEPALIVE, now=False)
        request.notifyFinish().addBoth(self.stop)
        return HANDLED

    def announce(self, summary):
        if self.request is None:
            return
        data = json.dumps(summary.asDict())
        self.request.write(
            "event: message\nid: {}\ndata: {}\n\n".format(summary.id, data).encode("ascii"))

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
