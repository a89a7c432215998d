"""
Messages into and out of the line door: a C{SEND}'s body as it arrives, a
long C{READM} reply streamed as the client reads it, and a delivery's reply.
"""

from twisted.internet import defer
from twisted.internet.interfaces import IPullProducer
from zope.interface import implementer

from twisted_mail import wire
from twisted_mail.mail.message import appendLine


class Body:
    """
    The body of a multi-line C{SEND} (or the whole message of a C{SENDM})
    being received, as a list of blocks of whole LF-terminated lines.

    @ivar whole: whether it is a whole RFC 5322 message (C{SENDM}).
    """

    __slots__ = ("receiver", "blocks", "size", "limit", "tooLarge", "bulk", "whole")

    def __init__(self, receiver, limit, whole=False):
        self.receiver = receiver
        self.whole = whole
        # Whether the protocol may take lines in bulk (not once a piece of
        # the body would pass the limit: the line path refuses it).
        self.bulk = True
        self.blocks = [bytearray()]
        self.size = 0
        self.limit = limit
        self.tooLarge = False

    def add(self, line):
        if self.tooLarge:
            return
        self.size += len(line) + 1
        if self.size > self.limit:
            # Keep nothing more: the message will be refused after the dot.
            self.tooLarge = True
            self.blocks = []
            return
        appendLine(self.blocks, line)

    def addBlock(self, text):
        """
        Add whole LF-terminated lines at once (their size within the
        limit, checked by the caller).
        """
        self.size += len(text)
        if self.blocks[-1] == b"":
            # The empty block a body starts with: no empty piece to store.
            self.blocks[-1] = text
        else:
            self.blocks.append(text)



#: A message longer than this is sent by a L{MessageSender}.
STREAM_THRESHOLD = 64 * 1024


@implementer(IPullProducer)
class MessageSender:
    """
    Sends a C{READM} reply carrying a large message a piece at a time, as
    the transport takes them (a pull producer): the reactor formats one
    piece at a time (no long stall) and the transport never holds a second
    copy of the whole message.

    @ivar done: a L{Deferred} firing when the reply is sent (never, if the
        connection is lost first: the protocol's connectionLost cleans up).
    """

    def __init__(self, head, message):
        self._head = head
        self._pieces = wire.messageChunks(message)
        self._transport = None
        self.done = defer.Deferred()

    def start(self, transport):
        self._transport = transport
        transport.write(self._head)
        transport.registerProducer(self, False)
        return self.done

    def resumeProducing(self):
        if self._transport is None:
            return
        piece = next(self._pieces, None)
        if piece is not None:
            self._transport.write(wire.formatMessageLines(piece))
            return
        transport, self._transport = self._transport, None
        transport.write(b".\r\n")
        transport.unregisterProducer()
        self.done.callback(None)

    def stopProducing(self):
        # The connection is lost: send nothing more.
        self._transport = None


class DeliveredReply:
    """
    Logs a delivery and makes its reply, once the store has it.
    """

    __slots__ = ("log", "sender", "receiver", "size")

    def __init__(self, log, sender, receiver, size):
        self.log = log
        self.sender = sender
        self.receiver = receiver
        self.size = size

    def __call__(self, _):
        self.log.info("delivered {} bytes from {} to {}".format(
            self.size, self.sender, self.receiver))
        return wire.formatOK("message delivered to {}".format(self.receiver))
