"""
Browser tests of the inbox page in a real headless Chromium (Debian's
C{chromium} and C{chromium-driver}, driven by Selenium; never a browser
download) against C{twistd -n simplemail --web ... --smtp ...}: open the
inbox, read a message, delete one, send one, see new mail arrive, and a
message full of script that never runs.

Skipped when Chromium, its driver or Selenium is missing (failed under
CI=1, as .ci/run sets).  One browser and
one server serve every test of a class.
"""

import atexit
import json
import os
import shutil
import smtplib
import tempfile
import time
import urllib.request

from twisted.trial.unittest import SynchronousTestCase

from tests.programs import missing as notInstalled
from tests.serverprocess import ServerProcess, freePort

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--window-size=1280,800"]

#: How long to wait for the page to show something, in seconds.
WAIT = 10

XSS_MAIL = (
    "From: \"<img src=x onerror=window.__xss=1>\" <evil@example.org>\r\n"
    "To: alice@localhost\r\n"
    "Subject: <script>window.__xss=2</script><img src=x onerror=window.__xss=3>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=XX\r\n"
    "\r\n"
    "--XX\r\n"
    "Content-Type: multipart/alternative; boundary=YY\r\n"
    "\r\n"
    "--YY\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "<script>window.__xss=4</script><img src=x onerror=\"window.__xss=5\">\r\n"
    "--YY\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<p>evil</p><script>parent.__xss=6;alert(6)</script>"
    "<img src=x onerror=\"parent.__xss=7;alert(7)\"><img src=\"http://127.0.0.1:1/x\">\r\n"
    "--YY--\r\n"
    "--XX\r\n"
    "Content-Type: text/html\r\n"
    "Content-Disposition: attachment; filename=\"<img src=x onerror=window.__xss=8>.html\"\r\n"
    "\r\n"
    "<script>window.__xss=9</script>\r\n"
    "--XX--\r\n"
)

HTML_MAIL = (
    "From: Newsletter <news@example.org>\r\n"
    "To: alice@localhost\r\n"
    "Subject: The December letter\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=XX\r\n"
    "\r\n"
    "--XX\r\n"
    "Content-Type: multipart/alternative; boundary=YY\r\n"
    "\r\n"
    "--YY\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "Hello from the newsletter.\r\n"
    "--YY\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<h1>December</h1><p>Hello <b>Alice</b>.</p>\r\n"
    "--YY--\r\n"
    "--XX\r\n"
    "Content-Type: application/pdf\r\n"
    "Content-Disposition: attachment; filename=report.pdf\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQK\r\n"
    "--XX--\r\n"
)


class _Shared:
    """
    The server and browser one test class shares: started by its first
    test, stopped after its last (or at exit).
    """

    def __init__(self, tests, passwords=False):
        self.tests = tests
        self.passwords = passwords
        self.done = 0
        self.server = self.driver = None
        self.profile = tempfile.mkdtemp(prefix="simplemail-chromium-")
        self.spool = tempfile.mkdtemp(prefix="simplemail-web-")
        atexit.register(self.close)

    def start(self):
        self.webPort = freePort()
        self.smtpPort = freePort()
        self.server = ServerProcess(os.path.join(self.spool, "spool"), extraArgs=[
            "--web", "tcp:{}:interface=127.0.0.1".format(self.webPort),
            "--smtp", "tcp:{}:interface=127.0.0.1".format(self.smtpPort)] + (
                ["--passwords", os.path.join(self.spool, "passwords")]
                if self.passwords else []))
        self.server.start()
        with self.server.connect() as client:
            for user in (b"alice", b"bob"):
                if self.passwords:
                    client.command(b"ADDU " + user + b" secret-" + user)
                else:
                    client.command(b"ADDU " + user)
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS + ["--user-data-dir=" + self.profile]:
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(WAIT)
        self.driver.set_script_timeout(WAIT)

    def finished(self):
        self.done += 1
        if self.done >= self.tests:
            self.close()

    def close(self):
        if self.driver is not None:
            try:
                self.driver.quit()
            finally:
                self.driver = None
        if self.server is not None:
            self.server.close()
            self.server = None
        shutil.rmtree(self.profile, ignore_errors=True)
        shutil.rmtree(self.spool, ignore_errors=True)


class BrowserMixin:

    shared = None
    passwords = False

    def setUp(self):
        missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
        try:
            import selenium  # noqa: F401
        except ImportError:
            missing.append("selenium (the test extra)")
        if missing:
            notInstalled(", ".join(missing), "apt-get install chromium chromium-driver")
        os.environ.setdefault("SE_OFFLINE", "true")
        cls = type(self)
        if cls.shared is None:
            cls.shared = _Shared(len([n for n in dir(cls) if n.startswith("test_")]),
                                 cls.passwords)
            cls.shared.start()
        self.addCleanup(cls.shared.finished)
        self.driver = cls.shared.driver
        self.server = cls.shared.server
        self.base = "http://127.0.0.1:{}/".format(cls.shared.webPort)

    # -- helpers

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + "api/v1" + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def smtp(self, text, to="alice@localhost"):
        with smtplib.SMTP("127.0.0.1", self.shared.smtpPort, timeout=WAIT) as client:
            client.sendmail("evil@example.org", [to], text.encode("utf-8"))

    def waitFor(self, condition, what):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                value = condition()
            except Exception:
                value = None
            if value:
                return value
            time.sleep(0.05)
        self.fail("timed out waiting for {}; page text: {!r}".format(
            what, self.driver.find_element("tag name", "body").text[:1000]))

    def css(self, selector):
        return self.driver.find_elements("css selector", selector)

    def listed(self):
        return [e.text for e in self.css("#message-list li .subject")]

    def openInbox(self, user="alice"):
        self.driver.get(self.base + "#/u/" + user)
        self.waitFor(lambda: self.css("#mailbox-view:not([hidden])") and
                     self.css("#mailbox-count")[0].text, "the inbox")

    def waitForLoaded(self):
        """
        Wait until the current document (the page, or the frame switched
        to) has finished loading: a positive marker for the checks that
        something did not happen.
        """
        self.waitFor(
            lambda: self.driver.execute_script("return document.readyState") == "complete",
            "the document to finish loading")

    def assertNoScriptRan(self):
        self.assertIsNone(self.driver.execute_script("return window.__xss"))
        from selenium.common.exceptions import NoAlertPresentException

        self.assertRaises(NoAlertPresentException, lambda: self.driver.switch_to.alert.text)


class InboxPageTests(BrowserMixin, SynchronousTestCase):
    """
    The inbox page in Chromium, without passwords.
    """

    def test_readMessage(self):
        """The inbox lists messages newest first; one opens with text, HTML frame and attachment."""
        self.smtp(HTML_MAIL)
        self.api("POST", "/users/alice/messages",
                 {"from": "bob", "subject": "Lunch on Friday?", "text": "Shall we?\n"})
        self.openInbox()
        self.waitFor(lambda: self.listed()[:2] == ["Lunch on Friday?", "The December letter"],
                     "both messages, newest first")
        self.css("#message-list li:nth-child(2) a")[0].click()
        self.waitFor(lambda: self.css("#message-subject")[0].text == "The December letter",
                     "the message")
        self.assertEqual(self.css("#message-text")[0].text, "Hello from the newsletter.")
        frame = self.css("iframe.html-frame")[0]
        self.assertEqual(frame.get_attribute("sandbox"), "")
        self.driver.switch_to.frame(frame)
        try:
            self.waitFor(lambda: self.driver.find_element("tag name", "b").text == "Alice",
                         "the HTML in its frame")
        finally:
            self.driver.switch_to.default_content()
        link = self.css(".parts a")[0]
        self.assertEqual(link.text, "report.pdf")
        self.assertTrue(link.get_attribute("href").endswith("/parts/1?folder=INBOX"))

    def test_deleteMessage(self):
        """Delete removes the message from the list and from the mailbox."""
        status, sent = self.api("POST", "/users/bob/messages",
                                {"from": "alice", "subject": "Delete me", "text": "bye\n"})
        self.assertEqual(status, 201)
        self.driver.get(self.base + "#/u/bob/m/" + sent["id"])
        self.waitFor(lambda: self.css("#message-subject")[0].text == "Delete me", "the message")
        self.css("#delete")[0].click()
        self.waitFor(lambda: "Delete me" not in self.listed() and
                     self.css("#mailbox-view:not(.reading)"), "the message to go")
        self.assertEqual(self.api("GET", "/users/bob/messages/" + sent["id"])[0], 404)

    def test_sendMessage(self):
        """Writing a message stores it in the receiver's mailbox."""
        self.driver.get(self.base + "#/u/alice/write")
        self.waitFor(lambda: len(self.css("#compose-to option")) == 2, "the users")
        from selenium.webdriver.support.ui import Select

        Select(self.css("#compose-to")[0]).select_by_value("bob")
        self.css("#compose-subject")[0].send_keys("Grüße from the page")
        self.css("#compose-text")[0].send_keys("Written in Chromium.")
        self.css("#compose-send")[0].click()
        self.waitFor(lambda: self.css("#mailbox-view:not([hidden])"), "the inbox again")
        status, page = self.api("GET", "/users/bob/messages")
        subjects = [m["subject"] for m in page["messages"]]
        self.assertIn("Grüße from the page", subjects)
        self.assertEqual(page["messages"][subjects.index("Grüße from the page")]["from"],
                         "alice@localhost")

    def test_newMailArrives(self):
        """A message sent over the line protocol appears in the open inbox without a reload."""
        self.openInbox()
        self.driver.execute_script("window.__marker = 1")
        with self.server.connect() as client:
            client.command(b"USER bob")
            client.send("alice", b"Fresh news\n")
        self.waitFor(lambda: self.css("#message-list li.new .snippet") and
                     self.css("#message-list li.new .snippet")[0].text == "Fresh news",
                     "the new message")
        self.assertEqual(self.driver.execute_script("return window.__marker"), 1)

    def test_nothingRemote(self):
        """HTML mail loads nothing from elsewhere: no image, style, frame, refresh or form."""
        import socket
        import threading

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.1)
        port = listener.getsockname()[1]
        hits = []
        done = threading.Event()

        def accept():
            while not done.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    continue
                hits.append(connection.recv(200))
                connection.close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        self.addCleanup(listener.close)
        self.addCleanup(thread.join, 5)
        self.addCleanup(done.set)
        remote = "http://127.0.0.1:{}".format(port)
        html = (
            '<meta http-equiv="refresh" content="0;url={r}/refresh">'
            '<link rel="stylesheet" href="{r}/style.css">'
            '<style>@import url("{r}/import.css"); p {{ background: url("{r}/bg.png") }}</style>'
            '<p>tracked</p><img src="{r}/pixel.png"><iframe src="{r}/frame"></iframe>'
            '<object data="{r}/object"></object><video src="{r}/video"></video>'
            '<form action="{r}/form"><input name=q></form>'
        ).format(r=remote)
        self.smtp("From: t@example.org\r\nTo: alice@localhost\r\nSubject: Tracker\r\n"
                  "MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n" + html + "\r\n")
        self.openInbox()
        self.waitFor(lambda: "Tracker" in self.listed(), "the message")
        [a for a in self.css("#message-list li a") if "Tracker" in a.text][0].click()
        frame = self.waitFor(lambda: self.css("iframe.html-frame"), "the frame")[0]
        self.driver.switch_to.frame(frame)
        try:
            self.waitFor(lambda: self.driver.find_element("tag name", "p").text == "tracked",
                         "the HTML in its frame")
            # Positive marker before the negative check: the frame's load
            # is complete, so every fetch it would make was tried (or
            # refused) by now.
            self.waitForLoaded()
        finally:
            self.driver.switch_to.default_content()
        self.waitForLoaded()
        self.assertEqual(hits, [])
        self.assertTrue(self.css("iframe.html-frame"))

    def test_xss(self):
        """Script in subject, address, body, HTML part and file name never runs."""
        self.smtp(XSS_MAIL)
        self.openInbox()
        self.waitFor(lambda: any("<script>" in s for s in self.listed()), "the message")
        self.assertNoScriptRan()
        link = [a for a in self.css("#message-list li a") if "<script>" in a.text][0]
        self.assertIn("<img src=x onerror=window.__xss=1>", link.text)
        link.click()
        self.waitFor(lambda: self.css("#message-subject")[0].text.startswith("<script>"),
                     "the message")
        self.assertEqual(self.css("#message-text")[0].text,
                         "<script>window.__xss=4</script><img src=x onerror=\"window.__xss=5\">")
        self.assertIn(".html", self.css(".parts a")[0].text)
        self.assertIn("onerror", self.css(".parts a")[0].text)
        frame = self.css("iframe.html-frame")[0]
        self.driver.switch_to.frame(frame)
        try:
            self.waitFor(lambda: self.driver.find_element("tag name", "p").text == "evil",
                         "the HTML in its frame")
            self.assertIsNone(self.driver.execute_script("return window.__xss"))
            self.waitForLoaded()
        finally:
            self.driver.switch_to.default_content()
        self.waitForLoaded()
        self.assertNoScriptRan()


class LoginPageTests(BrowserMixin, SynchronousTestCase):
    """
    The inbox page in Chromium, with passwords: log in, read one's own mail
    (its HTML frame too), log out.
    """

    passwords = True

    def logIn(self, user, password):
        self.driver.get(self.base)
        self.waitFor(lambda: self.css("#login-view:not([hidden])"), "the login form")
        self.css("#login-user")[0].clear()
        self.css("#login-user")[0].send_keys(user)
        self.css("#login-password")[0].clear()
        self.css("#login-password")[0].send_keys(password)
        self.css("#login-form button")[0].click()

    def test_logInReadLogOut(self):
        """A wrong password is refused; the right one opens one's own inbox, HTML frame included."""
        self.smtp(HTML_MAIL)
        self.logIn("alice", "wrong")
        self.waitFor(lambda: self.css("#login-error")[0].text == "Login failed.",
                     "the refusal")
        self.logIn("alice", "secret-alice")
        self.waitFor(lambda: self.listed() == ["The December letter"], "alice's inbox")
        self.assertTrue(self.driver.get_cookie("simplemail_session")["httpOnly"])
        self.assertEqual(self.driver.execute_script("return document.cookie"), "")
        self.css("#message-list li a")[0].click()
        frame = self.waitFor(lambda: self.css("iframe.html-frame"), "the frame")[0]
        self.driver.switch_to.frame(frame)
        try:
            self.waitFor(lambda: self.driver.find_element("tag name", "b").text == "Alice",
                         "the HTML in its frame")
        finally:
            self.driver.switch_to.default_content()
        self.driver.get(self.base + "#/u/bob")
        self.waitFor(lambda: self.css("#mailbox-title")[0].text == "Inbox of alice",
                     "the page to keep to alice's own inbox")
        self.css("#logout")[0].click()
        self.waitFor(lambda: self.css("#login-view:not([hidden])"), "the login form")
        self.assertIsNone(self.driver.get_cookie("simplemail_session"))
        self.driver.get(self.base + "#/u/alice")
        self.waitFor(lambda: self.css("#login-view:not([hidden])"), "the login form again")


class FolderPageTests(BrowserMixin, SynchronousTestCase):
    """
    Folders, unread state, flags and Move on the page, in Chromium (its own
    server: the counts start from nothing).
    """

    def item(self, subject):
        for element in self.css("#message-list li"):
            if element.find_element("css selector", ".subject").text == subject:
                return element
        return None

    def fresh(self, act, tries=5):
        """
        C{act()}, again (a few times) if the element it found was drawn
        again before it was used (a stale element: the page draws its lists
        again whenever an event comes).
        """
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(tries - 1):
            try:
                return act()
            except StaleElementReferenceException:
                pass
        return act()

    # The page draws its lists again whenever an event comes: the next two
    # read the page in one script, not element by element, so that a list
    # drawn again between two reads (a stale element) cannot fail them.

    def classes(self, subject):
        return self.driver.execute_script("""
            for (const li of document.querySelectorAll("#message-list li")) {
                const s = li.querySelector(".subject");
                if (s && s.textContent === arguments[0])
                    return (li.getAttribute("class") || "").split(/\\s+/).filter(Boolean);
            }
            return null;""", subject)

    def unseen(self, folder="INBOX"):
        return self.driver.execute_script("""
            const li = Array.from(document.querySelectorAll("#folder-list li"))
                .find(e => e.dataset.folder === arguments[0]);
            if (!li) return null;
            const count = li.querySelector(".unseen");
            return count ? parseInt(count.textContent, 10) : 0;""", folder)

    def flags(self, msgid, folder="INBOX"):
        status, page = self.api("GET", "/users/alice/messages?folder=" + folder)
        return {m["id"]: m["flags"] for m in page["messages"]}.get(msgid)

    def test_unreadFlagAndMove(self):
        """Unread mail is bold and counted; opening reads it; toggles and Move work."""
        ids = {}
        for subject in ("Stays unread", "Read me"):
            status, sent = self.api("POST", "/users/alice/messages",
                                    {"from": "bob", "subject": subject, "text": subject + "\n"})
            ids[subject] = sent["id"]
        self.openInbox()
        # The class's other tests may have left mail: count from here.
        self.waitFor(lambda: self.item("Read me") and self.item("Stays unread") and
                     self.unseen() is not None, "both messages")
        status, page = self.api("GET", "/users/alice/folders")
        unread = page["folders"][0]["unseen"]
        self.waitFor(lambda: self.unseen() == unread, "INBOX with its unread count")
        self.assertIn("unread", self.classes("Stays unread"))
        self.assertIn("unread", self.classes("Read me"))
        weight = self.fresh(lambda: self.item("Read me").find_element(
            "css selector", ".subject").value_of_css_property("font-weight"))
        self.assertEqual(weight, "700")
        self.assertEqual(self.unseen("Sent"), 0)

        self.fresh(lambda: self.item("Read me").find_element("css selector", "a").click())
        self.waitFor(lambda: self.css("#message-subject")[0].text == "Read me", "the message")
        self.waitFor(lambda: "unread" not in self.classes("Read me") and
                     self.unseen() == unread - 1, "the message read and counted so")
        self.assertEqual(self.flags(ids["Read me"]), ["\\Seen"])
        self.assertIn("unread", self.classes("Stays unread"))

        self.assertEqual(self.css("#toggle-seen")[0].text, "Mark unread")
        self.css("#toggle-seen")[0].click()
        self.waitFor(lambda: "unread" in self.classes("Read me") and self.unseen() == unread,
                     "the message unread again")
        self.assertEqual(self.flags(ids["Read me"]), [])
        self.css("#toggle-flag")[0].click()
        self.waitFor(lambda: "flagged" in self.classes("Read me"), "the flag")
        self.assertEqual(self.flags(ids["Read me"]), ["\\Flagged"])
        self.assertEqual(self.css("#toggle-flag")[0].text, "Unflag")

        from selenium.webdriver.support.ui import Select

        Select(self.css("#move-to")[0]).select_by_value("Archive")
        self.css("#move")[0].click()
        self.waitFor(lambda: self.item("Read me") is None and self.unseen("Archive") == 1,
                     "the message moved")
        self.assertEqual(self.flags(ids["Read me"], "Archive"), ["\\Flagged"])
        self.assertIsNone(self.flags(ids["Read me"]))

        def openArchive():
            # The folder list is drawn again as the move's events arrive: a
            # link found just before may be gone when clicked.
            self.css('#folder-list li[data-folder="Archive"] a')[0].click()
            return True

        self.waitFor(openArchive, "the Archive folder's link")
        self.waitFor(lambda: self.css("#mailbox-title")[0].text == "Archive of alice" and
                     self.item("Read me") is not None, "the Archive folder")
        self.assertIn("flagged", self.classes("Read me"))

    def test_newFolderAndLiveFlags(self):
        """A folder made on the page is listed; a flag changed elsewhere shows at once."""
        status, sent = self.api("POST", "/users/alice/messages",
                                {"from": "bob", "subject": "Live", "text": "x\n"})
        self.openInbox()
        self.css("#new-folder")[0].send_keys("Projects/2026")
        self.css("#new-folder-form button")[0].click()
        self.waitFor(lambda: self.css('#folder-list li[data-folder="Projects/2026"]'),
                     "the new folder")
        self.waitFor(lambda: self.item("Live") is not None, "the message")
        self.api("PATCH", "/users/alice/messages/" + sent["id"], {"flags": {"add": ["\\Seen"]}})
        self.waitFor(lambda: "unread" not in self.classes("Live"), "the flag change to show")

    def folderNames(self):
        return [e.get_attribute("data-folder") for e in self.css("#folder-list li")]

    def test_sentCopy(self):
        """
        What the page sends is kept, read, in the sender's Sent, and the
        inbox it goes back to lists the sender's folders: on a page opened
        at the compose view, as a bookmark opens it.
        """
        self.driver.get("about:blank")
        self.driver.get(self.base + "#/u/bob/write")
        self.waitFor(lambda: len(self.css("#compose-to option")) == 2, "the users")
        self.css("#compose-subject")[0].send_keys("Kept a copy")
        self.css("#compose-text")[0].send_keys("Sent from the page.")
        self.css("#compose-send")[0].click()
        self.waitFor(lambda: self.css("#mailbox-view:not([hidden])"), "the inbox again")
        status, page = self.api("GET", "/users/bob/messages?folder=Sent")
        self.assertEqual([m["flags"] for m in page["messages"] if m["subject"] == "Kept a copy"],
                         [["\\Seen"]])
        self.waitFor(lambda: self.unseen("Sent") == 0, "the folder list")

    def test_writeAsAnotherUser(self):
        """
        Writing as bob from alice's inbox goes back to bob's inbox with
        bob's folders and messages, not alice's still on the page.
        """
        self.api("POST", "/users/alice/messages",
                 {"from": "bob", "subject": "For alice", "text": "x\n"})
        status, page = self.api("GET", "/users/bob/messages")
        self.assertEqual(page["messages"], [])
        self.openInbox()
        self.waitFor(lambda: "For alice" in self.listed(), "alice's message")
        self.driver.get(self.base + "#/u/bob/write")
        self.waitFor(lambda: len(self.css("#compose-to option")) == 2, "the users")
        self.css("#compose-subject")[0].send_keys("From bob")
        self.css("#compose-text")[0].send_keys("Written as bob.")
        self.css("#compose-send")[0].click()
        self.waitFor(lambda: self.css("#mailbox-view:not([hidden]) #empty:not([hidden])") and
                     "Sent" in self.folderNames(), "bob's empty inbox and his folders")
        status, folders = self.api("GET", "/users/bob/folders")
        self.assertEqual(self.folderNames(), [f["name"] for f in folders["folders"]])
        self.assertEqual(self.listed(), [])
