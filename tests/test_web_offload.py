"""
Tests for L{twisted_mail.doors.web.offload}: the web API's big pure work
(decoding a big JSON body, building a big message, reading and encoding a
big message's view) is done by a helper process, so that the reactor only
copies bytes (issue 23, item 7; benchmarks/webbig.py measures the effect).
"""

import json
import os
import tempfile

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_mail.doors.web import offload
from twisted_mail.doors.web.site import makeWebFactory
from twisted_mail.stores.memory import MemoryStore

from tests.test_web import syncThread
from tests.webclient import WebClient

BIG = "caf\u00e9 \"quoted\" line\n" * (offload.THRESHOLD // 16)


def _message(text):
    return ("From: bob@localhost\nTo: alice@localhost\nSubject: big\n\n" + text).encode()


class HelperProcessTests(TestCase):
    timeout = 120

    def setUp(self):
        self.offloader = offload.Offloader(reactor)
        self.addCleanup(self.offloader.close)

    def helperPids(self):
        return [helper.transport.pid for helper in self.offloader._all]

    @defer.inlineCallbacks
    def test_bigWorkInHelper(self):
        """
        A big message's view is read and encoded by a helper process (not
        this one), with the same result as at once, coming back in pieces;
        a big body in a file (as twisted.web keeps one) is decoded and
        built there too; the helper is kept for the next call.
        """
        text = _message(BIG)
        result = yield self.offloader.run(offload.messageViewJSON, text, "m1")
        self.assertIsInstance(result, list)
        self.assertEqual(b"".join(result), offload.messageViewJSON(text, "m1"))
        [pid] = self.helperPids()
        self.assertNotEqual(pid, os.getpid())
        body = json.dumps({"text": BIG, "subject": "s"}).encode()
        fields = {"from": ("str", False), "subject": ("str", False), "text": ("str", True)}
        args = (fields, "bob", "alice", "localhost", 1e9, "<x@localhost>")
        with tempfile.TemporaryFile() as f:
            f.write(body)
            ok, composed = yield self.offloader.run(offload.composeFromBody, f, *args)
        self.assertTrue(ok)
        self.assertEqual(composed["length"], len(BIG))
        self.assertEqual(self.helperPids(), [pid])
        self.assertEqual(b"".join(composed["message"]),
                         offload.composeFromBody(body, *args)[1]["message"])

    @defer.inlineCallbacks
    def test_htmlAndPartInHelper(self):
        """
        A big message's HTML part and an attachment are read by a helper
        process, as they are at once; a part it lacks is None.
        """
        from email.message import EmailMessage

        mail = EmailMessage()
        mail["Subject"] = "big"
        mail.set_content("plain text\n")
        mail.add_alternative("<p>" + "caf\u00e9 " * 1000 + "</p>\n", subtype="html")
        mail.add_attachment(os.urandom(offload.THRESHOLD), maintype="application",
                            subtype="octet-stream", filename="blob.bin")
        text = mail.as_bytes()
        html = yield self.offloader.run(offload.messageHTML, text)
        self.assertEqual(b"".join(html), offload.messageHTML(text))
        found = yield self.offloader.run(offload.messagePart, text, 1)
        expected = offload.messagePart(text, 1)
        self.assertEqual(found[0], {"contentType": "application/octet-stream",
                                    "filename": "blob.bin"})
        self.assertEqual((found[0], b"".join(found[1])), tuple(expected))
        missing = yield self.offloader.run(offload.messagePart, text, 9)
        self.assertIsNone(missing)
        self.assertEqual(len(self.helperPids()), 1)

    @defer.inlineCallbacks
    def test_emptyRawAnswer(self):
        """
        An empty attachment of a big message comes back empty, with its
        name and type.
        """
        from email.message import EmailMessage

        mail = EmailMessage()
        mail.set_content("x" * offload.THRESHOLD + "\n")
        mail.add_attachment(b"", maintype="application", subtype="octet-stream",
                            filename="empty.bin")
        text = mail.as_bytes()
        info, data = offload.messagePart(text, 1)
        self.assertEqual((info["filename"], data), ("empty.bin", b""))
        found = yield self.offloader.run(offload.messagePart, text, 1)
        self.assertEqual((found[0], b"".join(found[1])), (info, b""))

    @defer.inlineCallbacks
    def test_refusalAndFailure(self):
        """
        A body that is not JSON comes back as a refusal; work that fails in
        the helper is a L{HelperError}, and the helper goes on serving.
        """
        bad = b"{" * offload.THRESHOLD
        ok, text = yield self.offloader.run(offload.decodeBody, bad, {})
        self.assertEqual((ok, text), (False, "the request body is not JSON"))
        padding = b" " * offload.THRESHOLD
        with self.assertRaises(offload.HelperError):
            yield self.offloader.run(offload.decodeBody, b"{}" + padding, None)
        ok, body = yield self.offloader.run(offload.decodeBody, b'{"a": 1}' + padding, {})
        self.assertEqual((ok, body), (True, {"a": 1}))
        self.assertEqual(len(self.helperPids()), 1)


class WebAPIOffloadTests(SynchronousTestCase):
    def test_bigSendAndViewOffloaded(self):
        """
        POST of a message and GET of its view hand their big work (decoding
        and building; reading and encoding) to the offloader, with the
        sizes it decides by; small work does not spawn anything.
        """
        calls = []

        def offloadInline(f, source, *args):
            calls.append((offload.sizeOf(source), f.__name__))
            if not isinstance(source, bytes):
                source = b"".join(offload.pieces(source))
            return defer.maybeDeferred(f, source, *args)

        store = MemoryStore(maxMessageSize=4 * offload.THRESHOLD)
        for user in ("alice", "bob"):
            self.successResultOf(store.addUser(user))
        factory = makeWebFactory(store, "localhost", maxMessageSize=4 * offload.THRESHOLD,
                                 reactor=reactor, inThread=syncThread)
        factory.resource.children[b"api"].offload = offloadInline
        client = WebClient(factory)
        sent = client.request("POST", "/api/v1/users/alice/messages",
                              json_={"from": "bob", "text": BIG})
        self.assertEqual(sent.code, 201, sent)
        view = client.request("GET", "/api/v1/users/alice/messages/" + sent.json()["id"])
        self.assertEqual(view.json()["text"], BIG)
        self.assertEqual([name for _, name in calls], ["composeFromBody", "messageViewJSON"])
        self.assertTrue(all(size >= offload.THRESHOLD for size, _ in calls), calls)


class _PausingConsumer:
    """
    A consumer that takes C{room} bytes before it pauses its producer, as
    a transport does when its buffer is full.
    """

    def __init__(self, room):
        self.room = room
        self.written = []
        self.producer = None

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.written.append(data)
        if sum(map(len, self.written)) >= self.room:
            self.producer.pauseProducing()


class FeederTests(SynchronousTestCase):
    def test_pieceAtATime(self):
        """
        A big body (bytes, the pieces a helper sent, or a file) is written a
        64 KiB piece at a time, only while the consumer takes it, and
        finished once all of it is written.
        """
        data = bytes(range(256)) * (offload.THRESHOLD // 128)
        with tempfile.TemporaryFile() as f:
            f.write(data)
            sources = [data, [data[:1000], data[1000:]], f]
            for source in sources:
                self.assertEqual(offload.sizeOf(source), len(data))
                finished = []
                consumer = _PausingConsumer(room=100000)
                feeder = offload.Feeder(consumer, offload.pieces(source), finished.append)
                feeder.start()
                while not finished:
                    # At most one piece beyond what the consumer would take.
                    self.assertLess(sum(map(len, consumer.written)), consumer.room + 64 * 1024)
                    self.assertLessEqual(max(map(len, consumer.written)), 64 * 1024)
                    consumer.room += 100000
                    feeder.resumeProducing()
                self.assertEqual(finished, [consumer])
                self.assertIsNone(consumer.producer)
                self.assertEqual(b"".join(consumer.written), data)

    def test_stopped(self):
        """
        A consumer that goes away (the client disconnected) stops the
        writing, and nothing is finished.
        """
        finished = []
        consumer = _PausingConsumer(room=1)
        feeder = offload.Feeder(consumer, offload.pieces(b"x" * 200000), finished.append)
        feeder.start()
        feeder.stopProducing()
        feeder.resumeProducing()
        self.assertEqual((len(consumer.written), finished), (1, []))
