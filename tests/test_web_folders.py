"""
Tests for the JSON API's folders and flags (MAILBOX.md, "The web, the API
and the console, with folders"; L{twisted_mail.doors.web.folders}): the
folder routes, C{?folder=}, a message's C{PATCH}, C{?seen=1}, the sent copy
and the new events, through the real site in memory against the memory
store.
"""

import json
from urllib.parse import quote

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.mail.model import FLAGGED, SEEN

from tests.test_web import WebMixin
from tests.webclient import parseResponse

API = "/api/v1/users/alice"


def path(name):
    return quote(name, safe="")


class FolderRouteTests(WebMixin, SynchronousTestCase):
    """
    GET/POST .../folders, PATCH/DELETE .../folders/{name}.
    """

    def folders(self, user="alice"):
        response = self.client.request("GET", "/api/v1/users/{}/folders".format(user))
        self.assertEqual(response.code, 200, response)
        return response.json()["folders"]

    def test_list(self):
        """The folders, INBOX first, with special use, total and unseen."""
        self.deliver(b"Subject: one\n\none\n")
        self.assertEqual(self.folders(), [
            {"name": "INBOX", "special": None, "total": 1, "unseen": 1},
            {"name": "Archive", "special": "archive", "total": 0, "unseen": 0},
            {"name": "Drafts", "special": "drafts", "total": 0, "unseen": 0},
            {"name": "Junk", "special": "junk", "total": 0, "unseen": 0},
            {"name": "Sent", "special": "sent", "total": 0, "unseen": 0},
            {"name": "Trash", "special": "trash", "total": 0, "unseen": 0},
        ])
        self.assertError(self.client.request("GET", "/api/v1/users/carol/folders"), 404)

    def test_create(self):
        """POST makes a folder (201 with its canonical name); again is 409."""
        response = self.client.request("POST", API + "/folders", json_={"name": "Work/2026"})
        self.assertEqual((response.code, response.json()), (201, {"name": "Work/2026"}))
        self.assertIn("Work/2026", [f["name"] for f in self.folders()])
        self.assertError(self.client.request(
            "POST", API + "/folders", json_={"name": "Work/2026"}), 409)
        self.assertError(self.client.request("POST", API + "/folders", json_={"name": "inbox"}),
                         409)

    def test_createOddNames(self):
        """Any name the rules allow is taken, however odd, and stays alice's."""
        odd = ["bob", "alice.lock", ".hidden", "...", "a\\b", "%2E%2E", "Grüße", "a b"]
        for name in odd:
            response = self.client.request("POST", API + "/folders", json_={"name": name})
            self.assertEqual((response.code, response.json()), (201, {"name": name}))
        names = [f["name"] for f in self.folders()]
        for name in odd:
            self.assertIn(name, names)
        self.assertEqual(len(self.folders("bob")), 6)
        self.assertEqual(self.successResultOf(self.store.listUsers()), ["alice", "bob"])

    def test_createBadNames(self):
        """Hostile or malformed names are 400s; nothing is made."""
        for name in ["", "../x", "a/../../b", "a//b", "a\x00b", "x" * 300, "/", "a/"]:
            self.assertError(self.client.request(
                "POST", API + "/folders", json_={"name": name}), 400)
        for body in [b"{}", b'{"name": 5}', b"[]", b"{"]:
            self.assertError(self.client.request("POST", API + "/folders", body=body), 400)
        self.assertEqual(len(self.folders()), 6)

    def test_rename(self):
        """PATCH renames a folder; its messages keep their ids."""
        self.successResultOf(self.store.createFolder("alice", "Old"))
        self.successResultOf(self.store.createFolder("alice", "Old/Sub"))
        summary = self.successResultOf(self.store.appendMessage("alice", "Old", b"x\n"))
        response = self.client.request("PATCH", API + "/folders/" + path("Old"),
                                       json_={"name": "New"})
        self.assertEqual((response.code, response.json()), (200, {"name": "New"}))
        names = [f["name"] for f in self.folders()]
        self.assertIn("New/Sub", names)
        self.assertNotIn("Old", names)
        page = self.client.request("GET", API + "/messages?folder=New").json()
        self.assertEqual([m["id"] for m in page["messages"]], [summary.id])

    def test_renameRefused(self):
        """INBOX and special folders can't be renamed (400); unknown is 404; taken 409."""
        self.successResultOf(self.store.createFolder("alice", "A"))
        self.successResultOf(self.store.createFolder("alice", "B"))
        for name, new, code in [("INBOX", "X", 400), ("inbox", "X", 400), ("Sent", "X", 400),
                                ("Nope", "X", 404), ("A", "B", 409), ("A", "../x", 400),
                                ("..", "X", 400)]:
            self.assertError(self.client.request(
                "PATCH", API + "/folders/" + path(name), json_={"name": new}), code)

    def test_slashInName(self):
        """A name's / is sent as %2F (or bare)."""
        self.successResultOf(self.store.createFolder("alice", "a/b"))
        response = self.client.request("PATCH", API + "/folders/a%2Fb", json_={"name": "a/c"})
        self.assertEqual(response.code, 200, response)
        response = self.client.request("DELETE", API + "/folders/a/c")
        self.assertEqual(response.code, 204, response)
        self.assertNotIn("a/c", [f["name"] for f in self.folders()])

    def test_delete(self):
        """DELETE removes a folder and its messages for good; INBOX is 400, unknown 404."""
        self.successResultOf(self.store.createFolder("alice", "Gone"))
        summary = self.successResultOf(self.store.appendMessage("alice", "Gone", b"x\n"))
        response = self.client.request("DELETE", API + "/folders/Gone")
        self.assertEqual((response.code, response.body), (204, b""))
        self.assertError(self.client.request("GET", API + "/messages/" + summary.id), 404)
        self.assertError(self.client.request("DELETE", API + "/folders/Gone"), 404)
        self.assertError(self.client.request("DELETE", API + "/folders/INBOX"), 400)
        self.assertError(self.client.request("GET", API + "/messages?folder=Gone"), 404)

    def test_methods(self):
        """Other methods are 405 with Allow."""
        response = self.client.request("PUT", API + "/folders")
        self.assertEqual((response.code, response.header("allow")), (405, "GET, POST, HEAD"))
        response = self.client.request("GET", API + "/folders/x")
        self.assertEqual((response.code, response.header("allow")), (405, "DELETE, PATCH"))


class FolderPasswordTests(WebMixin, SynchronousTestCase):
    """
    With passwords, another user's folders are 403, a cookie call needs
    X-Simplemail.
    """

    passwords = True

    def test_othersFolders(self):
        """Bob can't list, make or delete alice's folders."""
        auth = ("bob", "builder")
        for method, sub, body in [("GET", "/folders", None),
                                  ("POST", "/folders", {"name": "x"}),
                                  ("DELETE", "/folders/Sent", None),
                                  ("PATCH", "/messages/m1", {"flags": {"add": [SEEN]}})]:
            self.assertError(self.client.request(method, API + sub, json_=body, auth=auth),
                             403)
        response = self.client.request("GET", "/api/v1/users/bob/folders", auth=auth)
        self.assertEqual(response.code, 200)


class MessageFlagTests(WebMixin, SynchronousTestCase):
    """
    ?folder=, PATCH .../messages/{id}, ?seen=1.
    """

    def setUp(self):
        WebMixin.setUp(self)
        self.msgid = self.deliver(b"Subject: hello\n\nhello\n")

    def patch(self, body, msgid=None, query=""):
        return self.client.request("PATCH", API + "/messages/" + (msgid or self.msgid) + query,
                                   json_=body)

    def summary(self, folder="INBOX"):
        page = self.client.request("GET", API + "/messages?folder=" + path(folder)).json()
        return {m["id"]: m for m in page["messages"]}

    def test_listFolder(self):
        """GET messages?folder= lists that folder, each summary naming it."""
        self.successResultOf(self.store.appendMessage("alice", "Sent", b"Subject: s\n\ns\n",
                                                      flags=[SEEN]))
        [sent] = self.summary("Sent").values()
        self.assertEqual((sent["folder"], sent["flags"], sent["subject"]),
                         ("Sent", [SEEN], "s"))
        self.assertEqual(list(self.summary("inbox")), [self.msgid])
        self.assertError(self.client.request("GET", API + "/messages?folder=Nope"), 404)
        self.assertError(self.client.request("GET", API + "/messages?folder=..%2Fx"), 400)
        self.assertError(self.client.request("GET", API + "/messages?folder=%FF"), 400)

    def test_flags(self):
        """PATCH adds and removes flags, durably, and answers the summary now."""
        response = self.patch({"flags": {"add": [FLAGGED, "$Work", "\\seen"]}})
        self.assertEqual(response.code, 200, response)
        self.assertEqual((response.json()["id"], response.json()["flags"]),
                         (self.msgid, sorted(["$Work", FLAGGED, SEEN])))
        response = self.patch({"flags": {"remove": [SEEN], "add": []}})
        self.assertEqual(response.json()["flags"], sorted(["$Work", FLAGGED]))
        self.assertEqual(self.summary()[self.msgid]["flags"], sorted(["$Work", FLAGGED]))
        response = self.patch({})
        self.assertEqual((response.code, response.json()["flags"]),
                         (200, sorted(["$Work", FLAGGED])))

    def test_move(self):
        """PATCH with a folder moves the message, keeping its id; flags too in one call."""
        response = self.patch({"folder": "Archive", "flags": {"add": [SEEN]}})
        self.assertEqual(response.code, 200, response)
        self.assertEqual((response.json()["id"], response.json()["folder"],
                          response.json()["flags"]), (self.msgid, "Archive", [SEEN]))
        self.assertEqual(self.summary(), {})
        self.assertEqual(list(self.summary("Archive")), [self.msgid])
        # Found without ?folder= too, and with it.
        m = self.client.request("GET", API + "/messages/" + self.msgid).json()
        self.assertEqual((m["folder"], m["text"]), ("Archive", "hello\n"))
        self.assertEqual(self.client.request(
            "GET", API + "/messages/" + self.msgid + "/raw?folder=Archive").code, 200)
        self.assertError(self.client.request(
            "GET", API + "/messages/" + self.msgid + "?folder=INBOX"), 404)
        response = self.patch({"folder": "inbox"}, query="?folder=Archive")
        self.assertEqual(response.json()["folder"], "INBOX")
        self.assertEqual(list(self.summary()), [self.msgid])

    def test_moveNowhere(self):
        """A move into an unknown folder is 404 and moves nothing; no flag changes either."""
        self.assertError(self.patch({"folder": "Nope"}), 404)
        self.assertError(self.patch({"folder": "Nope", "flags": {"add": [SEEN]}}), 404)
        self.assertError(self.patch({"folder": "../x"}), 400)
        self.assertEqual(self.summary()[self.msgid]["flags"], [])

    def test_badPatches(self):
        """Bad flags, wrong types and unknown messages are 400 or 404; nothing changes."""
        for body in [{"flags": {"add": ["\\Recent"]}}, {"flags": {"add": ["a b"]}},
                     {"flags": {"add": "\\Seen"}}, {"flags": {"add": [5]}},
                     {"flags": {"set": []}}, {"flags": []}, {"folder": 5}, {"folder": ""}]:
            self.assertError(self.patch(body), 400)
        self.assertError(self.patch({"flags": {"add": [SEEN]}}, msgid="nosuch"), 404)
        self.assertError(self.patch({"flags": {"add": [SEEN]}}, msgid="..."), 404)
        self.assertEqual(self.summary()[self.msgid]["flags"], [])

    def test_seen(self):
        """GET with seen=1 marks the message read; plain GET and /raw do not."""
        m = self.client.request("GET", API + "/messages/" + self.msgid).json()
        self.assertEqual((m["flags"], m["folder"]), ([], "INBOX"))
        self.client.request("GET", API + "/messages/" + self.msgid + "/raw")
        self.client.request("GET", API + "/messages/" + self.msgid + "?seen=0")
        self.assertEqual(self.summary()[self.msgid]["flags"], [])
        m = self.client.request("GET", API + "/messages/" + self.msgid + "?seen=1").json()
        self.assertEqual(m["flags"], [SEEN])
        self.assertEqual(self.summary()[self.msgid]["flags"], [SEEN])
        self.assertError(self.client.request(
            "GET", API + "/messages/" + self.msgid + "?seen=yes"), 400)

    def test_deleteInFolder(self):
        """DELETE finds the message in any folder."""
        self.patch({"folder": "Trash"})
        response = self.client.request("DELETE", API + "/messages/" + self.msgid)
        self.assertEqual(response.code, 204)
        self.assertEqual(self.summary("Trash"), {})


class SentCopyTests(WebMixin, SynchronousTestCase):
    """
    POST messages with keepCopy: the id the store gave, and a read copy in
    the sender's Sent.
    """

    def test_keepCopy(self):
        """The receiver gets the message; the sender's Sent a read copy of it."""
        response = self.client.request("POST", "/api/v1/users/bob/messages", json_={
            "from": "alice", "subject": "Hi", "text": "hello\n", "keepCopy": True})
        self.assertEqual(response.code, 201, response)
        body = response.json()
        page = self.client.request("GET", "/api/v1/users/bob/messages").json()
        self.assertEqual([m["id"] for m in page["messages"]], [body["id"]])
        sent = self.client.request("GET", API + "/messages?folder=Sent").json()["messages"]
        self.assertEqual([(m["id"], m["flags"], m["subject"]) for m in sent],
                         [(body["copy"], [SEEN], "Hi")])
        raw = self.client.request("GET", API + "/messages/" + body["copy"] + "/raw").body
        self.assertEqual(raw, self.client.request(
            "GET", "/api/v1/users/bob/messages/" + body["id"] + "/raw").body)

    def test_noCopyByDefault(self):
        """Without keepCopy nothing goes to Sent; keepCopy must be a boolean."""
        response = self.client.request("POST", "/api/v1/users/bob/messages", json_={
            "from": "alice", "text": "hello\n"})
        self.assertEqual(sorted(response.json()), ["id"])
        self.assertEqual(self.client.request(
            "GET", API + "/messages?folder=Sent").json()["total"], 0)
        self.assertError(self.client.request("POST", "/api/v1/users/bob/messages", json_={
            "from": "alice", "text": "x", "keepCopy": "yes"}), 400)

    def test_copyFails(self):
        """If the copy can't be kept the message is still sent: copy is null, logged."""
        def failing(*args, **kwargs):
            raise RuntimeError("disk gone")

        self.store.appendMessage = failing
        response = self.client.request("POST", "/api/v1/users/bob/messages", json_={
            "from": "alice", "text": "hello\n", "keepCopy": True})
        self.assertEqual((response.code, response.json()["copy"]), (201, None))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class EventTests(WebMixin, SynchronousTestCase):
    """
    The event stream's flags, expunge and folders events.
    """

    def events(self, transport):
        response, _ = parseResponse(transport.value())
        blocks = [b for b in response.body.decode().split("\n\n") if b][1:]
        found = []
        for block in blocks:
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            found.append((fields["event"], json.loads(fields["data"])))
        return found

    def test_changes(self):
        """Flag changes, moves, deletes and folder changes are announced."""
        msgid = self.deliver(b"Subject: x\n\nx\n")
        protocol, transport = self.client.connect()
        protocol.dataReceived(b"GET /api/v1/users/alice/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.client.request("PATCH", API + "/messages/" + msgid,
                            json_={"flags": {"add": [FLAGGED]}})
        self.client.request("POST", API + "/folders", json_={"name": "Work"})
        self.client.request("PATCH", API + "/messages/" + msgid, json_={"folder": "Work"})
        self.client.request("DELETE", API + "/messages/" + msgid)
        events = self.events(transport)
        self.assertEqual([kind for kind, _ in events],
                         ["flags", "folders", "message", "expunge", "expunge"])
        self.assertEqual((events[0][1]["id"], events[0][1]["flags"]), (msgid, [FLAGGED]))
        self.assertEqual(events[1][1], {})
        self.assertEqual((events[2][1]["id"], events[2][1]["folder"]), (msgid, "Work"))
        self.assertEqual(events[3][1], {"id": msgid, "folder": "INBOX"})
        self.assertEqual(events[4][1], {"id": msgid, "folder": "Work"})
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.store._watchers.count("alice"), 0)
