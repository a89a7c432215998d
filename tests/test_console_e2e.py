"""
End-to-end tests of the console: C{python -m twisted_mail} as a child
process, on pipes and on a pseudo-terminal, against a real server listening
on loopback in the test's own reactor.
"""

import os
import sys

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.protocols.policies import WrappingFactory
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from twisted_mail.doors.line import MailServerFactory
from twisted_mail.stores.spool.store import SpoolStore

#: The checkout root, so the child imports this tree's twisted_mail.
ROOT = FilePath(__file__).parent().parent().path

#: Seconds to wait for any one thing a child process should do.
WAIT = 20


class ConsoleProcess(ProcessProtocol):
    """
    A console child process: collects its output and lets a test wait for
    text to appear or for the process to end.

    @ivar output: everything the child wrote to stdout (all of it, on a
        pty), with CRLF turned into LF.
    @ivar errors: everything it wrote to stderr.
    @ivar mark: where the next L{expect} starts looking in L{output}.
    """

    def __init__(self):
        self.output = ""
        self.errors = ""
        self._raw = b""
        self.mark = 0
        self.exitCode = None
        self.ended = defer.Deferred()
        self._waiting = []

    def childDataReceived(self, fd, data):
        if fd == 2:
            self.errors += data.decode("utf-8", "replace")
        else:
            self._raw += data
            self.output = self._raw.decode("utf-8", "replace").replace("\r\n", "\n")
        for entry in list(self._waiting):
            self._check(entry)

    def processEnded(self, reason):
        if reason.check(ProcessDone, ProcessTerminated):
            self.exitCode = reason.value.exitCode
            if self.exitCode is None:
                self.exitCode = -reason.value.signal
        for text, d in self._waiting:
            if not d.called:
                d.errback(
                    AssertionError(
                        "the console exited ({}) before writing {!r}; "
                        "output:\n{}\nstderr:\n{}".format(
                            self.exitCode, text, self.output, self.errors
                        )
                    )
                )
        self._waiting = []
        self.ended.callback(self.exitCode)

    def _check(self, entry):
        text, d = entry
        if d.called:
            self._waiting.remove(entry)
            return
        at = self.output.find(text, self.mark)
        if at != -1:
            self._waiting.remove(entry)
            before = self.output[self.mark : at]
            self.mark = at + len(text)
            d.callback(before)

    def expect(self, text):
        """
        @return: a L{Deferred} firing, once C{text} appears after L{mark},
            with the output between L{mark} and C{text}; L{mark} moves past
            C{text}.
        """
        d = defer.Deferred()
        entry = (text, d)
        if self.ended.called:
            return defer.fail(
                AssertionError(
                    "the console has exited; it never wrote {!r}; output:\n{}".format(
                        text, self.output
                    )
                )
            )
        self._waiting.append(entry)
        self._check(entry)
        return d


class ConsoleEndToEndTests(TestCase):
    """
    The console as a user runs it, against a real server.
    """

    timeout = 120

    def setUp(self):
        self.store = SpoolStore(FilePath(self.mktemp()), domain="localhost", reactor=reactor)
        close = getattr(self.store, "close", None)
        if close is not None:
            self.addCleanup(close)
        factory = MailServerFactory(self.store, maxMessageSize=10 * 1024 * 1024, reactor=reactor)
        # The wrapper keeps track of server connections, so a test can kill
        # them and the clean-up can wait until they are gone.
        self.server = WrappingFactory(factory)
        self.port = reactor.listenTCP(0, self.server, interface="127.0.0.1")
        self.addCleanup(self.stopServer)

    async def stopServer(self):
        if self.port is not None:
            port, self.port = self.port, None
            await port.stopListening()
        for wrapper in list(self.server.protocols):
            wrapper.transport.abortConnection()
        for _ in range(WAIT * 100):
            if not self.server.protocols:
                return
            await deferLater(0.01)
        self.fail("server connections were still open {} seconds after abort".format(WAIT))

    def killServer(self):
        """
        Make the server vanish: stop listening and cut every connection.
        """
        port, self.port = self.port, None
        port.stopListening()
        for wrapper in list(self.server.protocols):
            wrapper.transport.abortConnection()

    def spawn(self, *args, usePTY=False, argv=None):
        """
        Start the console, connected to the test server unless C{argv} is
        given.

        @return: the L{ConsoleProcess}.
        """
        if argv is None:
            argv = [
                sys.executable,
                "-m",
                "twisted_mail",
                "--connect",
                "tcp:127.0.0.1:{}".format(self.port.getHost().port),
            ]
        argv = list(argv) + list(args)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env.pop("PYTHONSTARTUP", None)
        proc = ConsoleProcess()
        reactor.spawnProcess(proc, argv[0], argv, env=env, usePTY=usePTY)
        self.addCleanup(self.reap, proc)
        return proc

    async def reap(self, proc):
        """
        Kill a child still running at the end of a test and wait for it.
        """
        if not proc.ended.called:
            try:
                proc.transport.signalProcess("KILL")
            except Exception:
                pass
        await self.within(proc.ended, "the killed console to end", proc)

    def within(self, d, what, proc):
        """
        Give C{d} L{WAIT} seconds; then fail with what was awaited and the
        console's output so far (and kill it), never hang.
        """

        def timedOut(result, timeout):
            if not proc.ended.called:
                try:
                    proc.transport.signalProcess("KILL")
                except Exception:
                    pass
            raise self.failureException(
                "{} did not happen within {} seconds; output so far:\n{}\nstderr:\n{}".format(
                    what, timeout, proc.output, proc.errors
                )
            )

        return d.addTimeout(WAIT, reactor, onTimeoutCancel=timedOut)

    def expect(self, proc, text):
        return self.within(proc.expect(text), "output {!r}".format(text), proc)

    def exited(self, proc):
        return self.within(proc.ended, "the console's exit", proc)

    async def say(self, proc, line, then):
        """
        Type a line, then wait for C{then}; return the output in between.
        """
        proc.transport.write(line.encode("utf-8") + b"\n")
        return await self.expect(proc, then)

    def assertInOrder(self, text, pieces):
        """
        Check that each of C{pieces} occurs in C{text}, in this order.
        """
        at = 0
        for piece in pieces:
            found = text.find(piece, at)
            if found == -1:
                self.fail("{!r} not found (in order) in:\n{}".format(piece, text))
            at = found + len(piece)

    async def conversation(self, usePTY):
        """
        Create two users, send a multi-line message with ###, read it back,
        and Quit, waiting for each prompt before typing.
        """
        proc = self.spawn(usePTY=usePTY)
        greeting = await self.expect(proc, "Main-Prompt> ")
        self.assertIn("simplemail ready", greeting)
        await self.say(proc, "Adduser alice", "Main-Prompt> ")
        await self.say(proc, "adduser Bob", "Main-Prompt> ")
        users = await self.say(proc, "Listusers", "Main-Prompt> ")
        self.assertInOrder(users, ["alice\n", "bob\n"])
        await self.say(proc, "Read", "Main-Prompt> ")
        await self.say(proc, "SetUser alice", "Sub-Prompt-alice> ")
        if usePTY:
            # On a terminal, Send asks for a subject first (none here).
            await self.say(proc, "Send bob", "Subject: ")
            await self.say(proc, "", "Type Message: ")
        else:
            await self.say(proc, "Send bob", "Type Message: ")
        proc.transport.write(b"Hello Bob,\n.a dot line\nListusers\nsee you ### not this\n")
        sent = await self.expect(proc, "Sub-Prompt-alice> ")
        self.assertNotIn("error", sent)
        await self.say(proc, "Done", "Main-Prompt> ")
        await self.say(proc, "SetUser bob", "Sub-Prompt-bob> ")
        message = await self.say(proc, "Read", "Sub-Prompt-bob> ")
        self.assertInOrder(
            message,
            [
                "From: alice@localhost\n",
                "To: bob@localhost\n",
                "\n\n",
                "Hello Bob,\n.a dot line\nListusers\nsee you \n",
            ],
        )
        self.assertNotIn("not this", message)
        proc.transport.write(b"Quit\n")
        code = await self.exited(proc)
        self.assertEqual((code, proc.errors), (0, ""))
        self.assertNotIn("Traceback", proc.output)

    async def test_pipeConversation(self):
        """
        On pipes, each prompt comes before the console reads the next line;
        a message typed up to ### is delivered, Read shows it, and Quit
        exits 0.
        """
        await self.conversation(usePTY=False)

    async def test_ptyConversation(self):
        """
        On a terminal, each prompt comes before the console reads the next
        line; a message typed up to ### is delivered, Read shows it, and
        Quit exits 0.
        """
        await self.conversation(usePTY=True)

    async def test_pipedScript(self):
        """
        A whole script piped in at once runs in order, and the end of input
        without Quit exits 0 after every reply is written.
        """
        proc = self.spawn()
        proc.transport.write(
            b"Adduser alice\n"
            b"Adduser bob\n"
            b"SetUser alice\n"
            b"Send bob\n"
            b"line one\n"
            b"Delete\n"
            b"###\n"
            b"Send carol\n"
            b"Done\n"
            b"SetUser bob\n"
            b"Read\n"
            b"Read\n"
        )
        proc.transport.closeStdin()
        code = await self.exited(proc)
        self.assertEqual((code, proc.errors), (0, ""))
        self.assertInOrder(
            proc.output,
            [
                "Main-Prompt> ",
                "Main-Prompt> ",
                "Main-Prompt> ",
                "Sub-Prompt-alice> Type Message: ",
                "Sub-Prompt-alice> error: no such user: carol\n",
                "Sub-Prompt-alice> ",
                "Main-Prompt> ",
                "Sub-Prompt-bob> From: alice@localhost\n",
                "\nline one\nDelete\nSub-Prompt-bob> error: No More Mail\n",
                "Sub-Prompt-bob> ",
            ],
        )
        self.assertNotIn("Type Message: ", proc.output.split("carol")[1])

    def withPasswords(self):
        """
        Serve the same spool with passwords on, on the test's port.
        """
        from twisted_mail.logins.portal import PasswordFile, makePortal

        passwords = PasswordFile(self.mktemp())
        self.server.wrappedFactory.portal = makePortal(passwords, reactor=reactor)
        self.server.wrappedFactory.passwordFile = passwords

    async def test_pipedPasswords(self):
        """
        With passwords on, a piped script gives Adduser its password twice and
        SetUser its password on the next line; a wrong one is refused.
        """
        self.withPasswords()
        proc = self.spawn()
        proc.transport.write(
            b"Adduser bob\nsecret pw\nsecret pw\n"
            b"SetUser bob\nwrong\nRead\n"
            b"SetUser bob\nsecret pw\nRead\nQuit\n"
        )
        proc.transport.closeStdin()
        code = await self.exited(proc)
        self.assertEqual((code, proc.errors), (0, ""))
        self.assertInOrder(
            proc.output,
            [
                "Main-Prompt> Password: Again: user bob created\n",
                "Main-Prompt> Password: error: login failed\n",
                "Main-Prompt> error: Read works only after SetUser",
                "Main-Prompt> Password: bob has 0 messages\n",
                "Sub-Prompt-bob> error: No More Mail\n",
            ],
        )
        self.assertNotIn("secret", proc.output)

    async def test_ptyPasswordNotEchoed(self):
        """
        On a terminal the password is not echoed.
        """
        self.withPasswords()
        await self.store.addUser("bob")
        self.server.wrappedFactory.passwordFile.setPassword("bob", "hidden-pw")
        proc = self.spawn(usePTY=True)
        await self.expect(proc, "Main-Prompt> ")
        await self.say(proc, "SetUser bob", "Password: ")
        reply = await self.say(proc, "hidden-pw", "Sub-Prompt-bob> ")
        self.assertIn("bob has 0 messages", reply)
        self.assertNotIn("hidden-pw", proc.output)
        proc.transport.write(b"Quit\n")
        self.assertEqual(await self.exited(proc), 0)

    async def test_ptyEndOfInput(self):
        """
        Ctrl-D at a terminal prompt acts as Quit: exit code 0.
        """
        proc = self.spawn(usePTY=True)
        await self.expect(proc, "Main-Prompt> ")
        proc.transport.write(b"\x04")
        code = await self.exited(proc)
        self.assertEqual(code, 0)
        self.assertNotIn("Traceback", proc.output)

    async def test_pipeEndOfInputInMessage(self):
        """
        Input that ends inside a message discards the message: nothing is
        delivered, and the exit code is 0.
        """
        proc = self.spawn()
        proc.transport.write(b"Adduser alice\nSetUser alice\nSend alice\nhalf a message\n")
        proc.transport.closeStdin()
        code = await self.exited(proc)
        self.assertEqual((code, proc.errors), (0, ""))
        self.assertIn("message discarded", proc.output)
        session = await self.store.openMailbox("alice")
        self.assertEqual(session.count, 0)
        await session.close()

    async def test_serverKilled(self):
        """
        When the server vanishes mid-session the console says so in one line
        and exits non-zero.
        """
        proc = self.spawn()
        await self.expect(proc, "Main-Prompt> ")
        self.killServer()
        code = await self.exited(proc)
        self.assertNotEqual(code, 0)
        rest = (proc.output[proc.mark :] + proc.errors).strip()
        self.assertEqual(len(rest.splitlines()), 1, rest)
        self.assertIn("server", rest)
        self.assertNotIn("Traceback", proc.output + proc.errors)

    async def test_noServer(self):
        """
        With no server listening, the console says so in one line and exits
        non-zero.
        """
        port = self.port.getHost().port
        await self.stopServer()
        proc = self.spawn(
            argv=[sys.executable, "-m", "twisted_mail", "127.0.0.1", str(port)]
        )
        proc.transport.closeStdin()
        code = await self.exited(proc)
        self.assertNotEqual(code, 0)
        lines = (proc.output + proc.errors).strip().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("cannot connect to 127.0.0.1 port {}".format(port), lines[0])

    async def test_unixSocket(self):
        """
        C{--connect} takes any client endpoint description, such as a UNIX
        socket.
        """
        path = self.mktemp()
        unixPort = reactor.listenUNIX(path, self.server)
        self.addCleanup(unixPort.stopListening)
        proc = self.spawn(
            argv=[sys.executable, "-m", "twisted_mail", "--connect", "unix:" + path]
        )
        await self.expect(proc, "Main-Prompt> ")
        await self.say(proc, "Adduser carol", "Main-Prompt> ")
        users = await self.say(proc, "Listusers", "Main-Prompt> ")
        self.assertEqual(users, "carol\n")
        proc.transport.write(b"Quit\n")
        self.assertEqual(await self.exited(proc), 0)

    async def test_badOption(self):
        """
        An unknown option gives a one-line usage error and exit code 2, not
        a traceback.
        """
        proc = self.spawn("--no-such-option")
        code = await self.exited(proc)
        self.assertEqual(code, 2)
        self.assertEqual(proc.output, "")
        self.assertEqual(len(proc.errors.strip().splitlines()), 1, proc.errors)
        self.assertIn("--no-such-option", proc.errors)

    async def test_blockingRestored(self):
        """
        After the console exits, the standard input and output it shared
        with its parent (a shell) are in blocking mode again.
        """
        script = (
            "import fcntl, os, subprocess, sys\n"
            "subprocess.call(sys.argv[1:])\n"
            "flags = [fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK for fd in (0, 1)]\n"
            "sys.stdout.write('non-blocking after exit: %r\\n' % (flags,))\n"
        )
        proc = self.spawn(
            argv=[
                sys.executable,
                "-c",
                script,
                sys.executable,
                "-m",
                "twisted_mail",
                "--connect",
                "tcp:127.0.0.1:{}".format(self.port.getHost().port),
            ]
        )
        await self.expect(proc, "Main-Prompt> ")
        proc.transport.write(b"Quit\n")
        await self.expect(proc, "non-blocking after exit: [0, 0]\n")
        self.assertEqual(await self.exited(proc), 0)


def deferLater(seconds):
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)
