"""
Driving the IMAP door through a StringTransport on the memory store (not a
test module); L{recordBatchedReads} serves the POP3 door's tests too.
"""

from twisted.internet.testing import MemoryReactorClock, StringTransport

from twisted_mail.doors.imap.factory import IMAPFactory
from twisted_mail.stores.memory import MemoryStore, _MemoryFolder


def recordBatchedReads(case):
    """
    Record, for the rest of test C{case}, how many messages each
    C{fetchMessages} of the memory store asks for.

    @return: the L{list} of those counts.
    """
    asked = []
    original = _MemoryFolder.fetchMessages

    def fetchMessages(folder, msgids):
        asked.append(len(msgids))
        return original(folder, msgids)

    case.patch(_MemoryFolder, "fetchMessages", fetchMessages)
    return asked


def message(subject, body=b"body\n", sender=b"Al <al@example.org>"):
    return (b"From: " + sender + b"\nTo: bob@localhost\nSubject: " + subject
            + b"\nDate: Mon, 7 Feb 1994 21:52:25 -0800\n\n" + body)


class IMAPSession:
    """
    One IMAP connection to a fresh door over a memory store with user bob.
    """

    def __init__(self, store=None, messages=(), portal=None, peer=None, **kwargs):
        if store is None:
            store = MemoryStore()
            store.addUser("bob")
        self.store = store
        for text in messages:
            store.deliverMessage("al@example.org", "bob", text)
        self.reactor = MemoryReactorClock()
        self.factory = kwargs.pop("factory", None) or IMAPFactory(
            store, portal=portal, reactor=self.reactor, **kwargs)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=peer) if peer else StringTransport()
        self.protocol.makeConnection(self.transport)
        self.greeting = self.read()

    def read(self):
        """
        Everything written since the last read, producers run to the end.
        """
        while self.transport.producer is not None and not self.transport.disconnecting:
            before = len(self.transport.value())
            self.transport.producer.resumeProducing()
            if len(self.transport.value()) == before and self.transport.producer is not None:
                break
        data = self.transport.value()
        self.transport.clear()
        return data

    def send(self, data):
        self.protocol.dataReceived(data)
        return self.read()

    def command(self, line):
        """
        Send one command line (CRLF added) and return what came back.
        """
        return self.send(line + b"\r\n")

    def login(self):
        out = self.command(b"L LOGIN bob secret")
        assert b"L OK" in out, out
        return out

    def select(self, name=b"INBOX"):
        self.login()
        out = self.command(b"S SELECT " + name)
        assert b"S OK" in out, out
        return out
