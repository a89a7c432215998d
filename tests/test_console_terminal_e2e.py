"""
End-to-end tests of the console as a person uses it on a terminal (a real
pseudo-terminal: line editing, history, completion, List, Read <n>, Save,
the terminal restored on every way out) and as a script uses it on pipes
(the transcript byte for byte as before line editing existed).
"""

import os
import re
import signal
import sys
from email.message import EmailMessage

from twisted.trial.unittest import TestCase

from tests import test_console_e2e as harness

LEFT, UP, TAB, CTRL_U = b"\x1b[D", b"\x1b[A", b"\t", b"\x15"


class _Harness(TestCase):
    """
    The server, spawning and waiting of L{harness.ConsoleEndToEndTests},
    without its tests.
    """

    timeout = 120

    for _name in ("setUp", "stopServer", "killServer", "spawn", "reap", "within",
                  "expect", "exited", "say", "assertInOrder", "withPasswords"):
        locals()[_name] = getattr(harness.ConsoleEndToEndTests, _name)
    del _name

    def type(self, proc, data):
        proc.transport.write(data)

    async def started(self):
        proc = self.spawn(usePTY=True)
        await self.expect(proc, "Main-Prompt> ")
        return proc

    async def quit(self, proc):
        proc.transport.write(b"Quit\r")
        self.assertEqual(await self.exited(proc), 0)
        self.assertNotIn("Traceback", proc.output + proc.errors)


class LineEditingTests(_Harness):
    async def test_arrowsHistoryAndCtrlU(self):
        """
        Left moves the cursor back to fix a typo, Up recalls the last
        command, Ctrl-U clears what was typed.
        """
        await self.store.addUser("carol")
        proc = await self.started()
        # The line is drawn again as it is edited: wait for the answers.
        self.type(proc, b"Lstusers" + LEFT * 7 + b"i\r")
        await self.expect(proc, "carol\n")
        await self.expect(proc, "Main-Prompt> ")
        self.type(proc, UP + b"\r")
        again = await self.expect(proc, "carol\n")
        self.assertIn("Listusers", again)
        await self.expect(proc, "Main-Prompt> ")
        self.type(proc, b"garbage" + CTRL_U + b"Listusers\r")
        await self.expect(proc, "carol\n")
        await self.expect(proc, "Main-Prompt> ")
        self.assertEqual(proc.output.count("carol\n"), 3)
        self.assertNotIn("unknown command", proc.output)
        await self.quit(proc)

    async def test_tabCompletion(self):
        """
        Tab completes command names, and user ids where one is expected,
        including a user just added.
        """
        proc = await self.started()
        self.type(proc, b"Add" + TAB + b"dave\r")
        await self.expect(proc, "user dave created")
        await self.expect(proc, "Main-Prompt> ")
        self.type(proc, b"SetU" + TAB + b"da" + TAB + b"\r")
        await self.expect(proc, "dave has 0 messages")
        await self.expect(proc, "Sub-Prompt-dave> ")
        await self.quit(proc)

    async def test_passwordNotInHistory(self):
        """
        A password typed is neither shown nor recalled by Up: Up gives the
        SetUser command, which asks for the password again.
        """
        self.withPasswords()
        await self.store.addUser("bob")
        self.server.wrappedFactory.passwordFile.setPassword("bob", "hidden-pw")
        proc = await self.started()
        await self.say(proc, "SetUser bob", "Password: ")
        await self.say(proc, "hidden-pw", "Sub-Prompt-bob> ")
        self.type(proc, UP + b"\r")
        await self.expect(proc, "Password: ")
        self.type(proc, b"hidden-pw\r")
        await self.expect(proc, "Sub-Prompt-bob> ")
        self.type(proc, UP + UP + UP + b"\r")
        await self.expect(proc, "Password: ")
        self.assertNotIn("hidden-pw", proc.output)
        self.type(proc, b"\x04")
        self.assertEqual(await self.exited(proc), 0)


class ReadableMailTests(_Harness):
    async def test_listReadSave(self):
        """
        List numbers the messages; Read 2 shows the second decoded, with
        its attachment listed; Save writes the attachment to a file.
        """
        await self.store.addUser("alice")
        await self.store.addUser("bob")
        await self.store.deliver("alice", "bob", b"first message\n")
        m = EmailMessage()
        m["From"] = "J\u00fcrgen M\u00fcller <j@example.org>"
        m["To"] = "bob@localhost"
        m["Subject"] = "Gr\u00fc\u00dfe"
        m.set_content("Hallo Bob,\nanbei.\n")
        m.add_attachment(b"%PDF-1.4 test", maintype="application", subtype="pdf",
                         filename="Bericht M\u00e4rz.pdf")
        await self.store.deliverMessage("j@example.org", "bob", m.as_bytes())
        target = os.path.abspath(self.mktemp())
        proc = await self.started()
        await self.say(proc, "SetUser bob", "Sub-Prompt-bob> ")
        listing = await self.say(proc, "List", "Sub-Prompt-bob> ")
        self.assertInOrder(listing, ["1  ", "alice@localhost", "(no subject)",
                                     "2  ", "J\u00fcrgen M\u00fcller", "Gr\u00fc\u00dfe"])
        message = await self.say(proc, "Read 2", "Sub-Prompt-bob> ")
        self.assertInOrder(message, [
            "From: J\u00fcrgen M\u00fcller <j@example.org>\n",
            "Subject: Gr\u00fc\u00dfe\n",
            "\nHallo Bob,\nanbei.\n",
            "[1] Bericht M\u00e4rz.pdf (application/pdf, 13 B)\n",
        ])
        saved = await self.say(proc, "Save 1 " + target, "Sub-Prompt-bob> ")
        self.assertIn("saved attachment 1", saved)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"%PDF-1.4 test")
        await self.quit(proc)

    async def test_sendWithSubject(self):
        """
        On a terminal Send asks for a subject; the message arrives with it.
        """
        await self.store.addUser("alice")
        proc = await self.started()
        await self.say(proc, "SetUser alice", "Sub-Prompt-alice> ")
        await self.say(proc, "Send alice", "Subject: ")
        await self.say(proc, "\u00dcber alles", "Type Message: ")
        await self.say(proc, "text ###", "Sub-Prompt-alice> ")
        await self.say(proc, "List", "Sub-Prompt-alice> ")
        self.assertIn("\u00dcber alles", proc.output)
        await self.quit(proc)


#: A wrapper run on the pty: starts the console, then reports whether the
#: terminal's settings are what they were.
_WRAPPER = (
    "import subprocess, sys, termios\n"
    "before = termios.tcgetattr(0)\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "sys.stdout.write('child %d\\n' % child.pid)\n"
    "sys.stdout.flush()\n"
    "code = child.wait()\n"
    "after = termios.tcgetattr(0)\n"
    "sys.stdout.write('\\r\\nexit %d restored %s\\r\\n' % (code, before == after))\n"
)


class RestoredTests(_Harness):
    def wrapped(self):
        return self.spawn(
            usePTY=True,
            argv=[sys.executable, "-c", _WRAPPER, sys.executable, "-m", "twisted_mail",
                  "--connect", "tcp:127.0.0.1:{}".format(self.port.getHost().port)],
        )

    async def check(self, proc, code):
        await self.expect(proc, "exit {} restored True".format(code))
        self.assertEqual(await self.exited(proc), 0)

    async def test_terminated(self):
        """
        After the console is stopped by SIGTERM (the reactor shuts down
        without a word from the user) the terminal's settings are as they
        were.
        """
        proc = self.wrapped()
        pid = int((await self.expect(proc, "Main-Prompt> ")).split("child ")[1].split()[0])
        proc.transport.write(b"Lis")
        await self.expect(proc, "Lis")
        os.kill(pid, signal.SIGTERM)
        await self.expect(proc, "restored True")
        self.assertEqual(await self.exited(proc), 0)

    async def test_quit(self):
        """
        After Quit the terminal's settings are as they were.
        """
        proc = self.wrapped()
        await self.expect(proc, "Main-Prompt> ")
        proc.transport.write(b"Quit\r")
        await self.check(proc, 0)

    async def test_ctrlD(self):
        """
        After Ctrl-D the terminal's settings are as they were.
        """
        proc = self.wrapped()
        await self.expect(proc, "Main-Prompt> ")
        proc.transport.write(b"Lis" + CTRL_U + b"\x04")
        await self.check(proc, 0)

    async def test_serverLost(self):
        """
        After the server vanishes the terminal's settings are as they were.
        """
        proc = self.wrapped()
        await self.expect(proc, "Main-Prompt> ")
        proc.transport.write(b"Listu")
        self.killServer()
        await self.check(proc, 1)


#: The piped transcript of the console before line editing existed (Date
#: and Message-ID values aside): the same script must give it byte for byte.
_SCRIPT = b"""Help
Adduser alice
Adduser bob
adduser Bob
Listusers
Read
SetUser alice
Send bob
Hello Bob,
.a dot line
Listusers
see you ### not this
Send carol
Send a/b
Done
SetUser bob
Read
Delete
Read
Frobnicate now
Adduser a b
Done
Read
Send bob
SetUser nobody
"""

_TRANSCRIPT = """simplemail ready
Main-Prompt> commands:
  Listusers            list the users
  Adduser <userid>     create a user
  SetUser <userid>     work as a user: read, delete and send mail
  Quit                 leave
  Help                 show this list
Main-Prompt> user alice created
Main-Prompt> user bob created
Main-Prompt> error: user already exists: bob
Main-Prompt> alice
bob
Main-Prompt> error: Read works only after SetUser <userid> (type Help for a list)
Main-Prompt> alice has 0 messages
Sub-Prompt-alice> Type Message: message delivered to bob
Sub-Prompt-alice> error: no such user: carol
Sub-Prompt-alice> error: invalid user id: a/b
Sub-Prompt-alice> goodbye alice
Main-Prompt> bob has 1 message
Sub-Prompt-bob> From: alice@localhost
To: bob@localhost
Date: X
Message-ID: X

Hello Bob,
.a dot line
Listusers
see you 
Sub-Prompt-bob> message deleted
Sub-Prompt-bob> error: No More Mail
Sub-Prompt-bob> error: unknown command: Frobnicate (type Help for a list)
Sub-Prompt-bob> error: usage: Adduser <userid>
Sub-Prompt-bob> goodbye bob
Main-Prompt> error: Read works only after SetUser <userid> (type Help for a list)
Main-Prompt> error: Send works only after SetUser <userid> (type Help for a list)
Main-Prompt> error: no such user: nobody
Main-Prompt> bye
"""


class PipedTranscriptTests(_Harness):
    async def test_transcript(self):
        """
        A script piped in gives the very transcript the console gave before
        line editing existed: the same bytes, no escape sequence.
        """
        proc = self.spawn()
        proc.transport.write(_SCRIPT)
        proc.transport.closeStdin()
        self.assertEqual(await self.exited(proc), 0)
        self.assertNotIn("\x1b", proc._raw.decode("utf-8"))
        self.assertNotIn(b"\r", proc._raw)
        output = re.sub(r"(?m)^(Date|Message-ID): .*$", r"\1: X", proc.output)
        self.assertEqual(output, _TRANSCRIPT)
        self.assertEqual(proc.errors, "")


del _Harness
