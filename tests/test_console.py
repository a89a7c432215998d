"""
Tests for L{twisted_mail.console}: the console against an in-memory fake
client, with a L{StringTransport} as its standard I/O.
"""

import io
import sys

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail import console
from twisted_mail.console.client import ServerConnectionLost
from twisted_mail.console import MailConsole, Options, main
from twisted_mail.errors import ServerError


class FakeClient:
    """
    An in-memory stand-in for L{MailClientProtocol}: each command call is
    recorded with a L{Deferred} that the test fires.

    @ivar calls: a list of C{(name, args, Deferred)}.
    """

    def __init__(self):
        self.greeting = defer.Deferred()
        self.calls = []
        self.disconnected = False
        self._whenDisconnected = defer.Deferred()

    def _call(self, name, *args):
        d = defer.Deferred()
        self.calls.append((name, args, d))
        return d

    def listUsers(self):
        return self._call("listUsers")

    def addUser(self, userid, password=None):
        if password is None:
            return self._call("addUser", userid)
        return self._call("addUser", userid, password)

    def login(self, password):
        return self._call("login", password)

    def selectUser(self, userid):
        return self._call("selectUser", userid)

    def readMessage(self):
        return self._call("readMessage")

    def deleteMessage(self):
        return self._call("deleteMessage")

    def startSend(self, receiver):
        return self._call("startSend", receiver)

    def sendBody(self, body):
        return self._call("sendBody", body)

    def done(self):
        return self._call("done")

    def quit(self):
        return self._call("quit")

    def capabilities(self):
        return self._call("capabilities")

    def disconnect(self):
        self.disconnected = True

    def whenDisconnected(self):
        return self._whenDisconnected

    def serverGone(self, text="connection to the server lost"):
        """
        Act as the real client does when the connection drops: fail every
        unanswered call, then report the disconnection.
        """
        for name, args, d in self.calls:
            if not d.called:
                d.errback(ServerConnectionLost(text))
        self._whenDisconnected.callback(ServerConnectionLost(text))


class ConsoleTestsMixin:
    def start(self, greet=True, capabilities=(), terminal=None):
        self.client = FakeClient()
        self.console = MailConsole(self.client, terminal)
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)
        if greet:
            self.client.greeting.callback("simplemail ready")
            self.assertEqual(self.output(), "simplemail ready\n")
            # The console asks what the server supports before prompting.
            self.lastCall("capabilities").callback(list(capabilities))
            self.client.calls.pop()
            self.assertEqual(self.output(), "Main-Prompt> ")

    def output(self):
        """
        The text written since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return data.decode("utf-8")

    def type(self, text):
        if isinstance(text, str):
            text = text.encode("utf-8")
        self.console.dataReceived(text)

    def lastCall(self, name, *args):
        """
        Check the newest client call and return its L{Deferred}.
        """
        self.assertTrue(self.client.calls, "the client was not called")
        callName, callArgs, d = self.client.calls[-1]
        self.assertEqual((callName, callArgs), (name, args))
        return d

    def endInput(self):
        self.console.readConnectionLost()

    def closeStdio(self):
        """
        What L{StandardIO} does once the console asked to close: report the
        connection lost after the output is written.
        """
        self.assertTrue(self.transport.disconnecting)
        self.console.connectionLost(Failure(Exception("closed")))

    def selectBob(self):
        self.type("SetUser bob\n")
        self.lastCall("selectUser", "bob").callback("bob has 1 messages")
        self.assertEqual(self.output(), "bob has 1 messages\nSub-Prompt-bob> ")


class StartTests(ConsoleTestsMixin, SynchronousTestCase):
    def test_halfCloseable(self):
        """
        The console is told of end of input separately from the end of
        output, so output written after end of input is not lost.
        """
        self.assertTrue(IHalfCloseableProtocol.implementedBy(MailConsole))

    def test_greetingThenPrompt(self):
        """
        The server's greeting is shown, then the main prompt without a
        newline.
        """
        self.start()

    def test_inputWaitsForGreeting(self):
        """
        Commands typed before the greeting are run only after it is shown.
        """
        self.start(greet=False)
        self.type("Listusers\n")
        self.assertEqual(self.client.calls, [])
        self.assertEqual(self.transport.producerState, "paused")
        self.client.greeting.callback("simplemail ready")
        self.lastCall("capabilities").callback([])
        self.lastCall("listUsers")
        self.assertEqual(self.output(), "simplemail ready\nMain-Prompt> ")

    def test_greetingRefused(self):
        """
        A server that refuses the session is reported in one line and the
        console exits 1.
        """
        self.start(greet=False)
        self.client.greeting.errback(ServerError("too many connections, try later"))
        self.assertEqual(
            self.output(),
            "error: the server refused the session: too many connections, try later\n",
        )
        self.assertTrue(self.client.disconnected)
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 1)

    def test_noGreetingServerGone(self):
        """
        A server that hangs up before greeting gives exactly one line and
        exit code 1.
        """
        self.start(greet=False)
        self.client.serverGone("the server closed the connection")
        self.assertEqual(self.output(), "error: the server closed the connection\n")
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 1)


class CommandTests(ConsoleTestsMixin, SynchronousTestCase):
    def setUp(self):
        self.start()

    def test_listUsers(self):
        """
        Listusers shows one user id a line, then the prompt again.
        """
        self.type("Listusers\n")
        self.lastCall("listUsers").callback(["alice", "bob"])
        self.assertEqual(self.output(), "alice\nbob\nMain-Prompt> ")

    def test_listUsersEmpty(self):
        """
        An empty user list says so instead of showing nothing.
        """
        self.type("Listusers\n")
        self.lastCall("listUsers").callback([])
        self.assertEqual(self.output(), "no users\nMain-Prompt> ")

    def test_caseInsensitive(self):
        """
        Command names work in any case, with extra spaces around words.
        """
        self.type("  lIsTuSeRs  \n")
        self.lastCall("listUsers")

    def test_emptyLine(self):
        """
        An empty line shows the prompt again and asks the server nothing.
        """
        self.type("\n   \n")
        self.assertEqual(self.output(), "Main-Prompt> Main-Prompt> ")
        self.assertEqual(self.client.calls, [])

    def test_addUser(self):
        """
        Adduser sends the user id in canonical (lower-case) form and shows
        the server's text.
        """
        self.type("Adduser Bob\n")
        self.lastCall("addUser", "bob").callback("user bob created")
        self.assertEqual(self.output(), "user bob created\nMain-Prompt> ")

    def test_addUserExists(self):
        """
        A refusal from the server is shown as one error line, without
        C{-ERR}, and the console carries on.
        """
        self.type("Adduser bob\n")
        self.lastCall("addUser", "bob").errback(ServerError("user already exists: bob"))
        self.assertEqual(self.output(), "error: user already exists: bob\nMain-Prompt> ")
        self.type("Listusers\n")
        self.lastCall("listUsers")

    def test_errorWithoutText(self):
        """
        A bare C{-ERR} with no text still reads as an error sentence.
        """
        self.type("Listusers\n")
        self.lastCall("listUsers").errback(ServerError(""))
        self.assertEqual(self.output(), "error: refused by the server\nMain-Prompt> ")

    def test_wrongArgumentCount(self):
        """
        A command with too few or too many words is answered locally with
        its usage.
        """
        self.type("Adduser\nAdduser a b\nSetUser\nListusers now\n")
        self.assertEqual(self.client.calls, [])
        self.assertEqual(
            self.output(),
            "error: usage: Adduser <userid>\nMain-Prompt> "
            "error: usage: Adduser <userid>\nMain-Prompt> "
            "error: usage: SetUser <userid>\nMain-Prompt> "
            "error: usage: Listusers\nMain-Prompt> ",
        )

    def test_invalidUserId(self):
        """
        A user id that breaks the rules is refused locally.
        """
        self.type("Adduser ../etc\nSetUser caf\xe9\nAdduser bob.lock\n")
        self.assertEqual(self.client.calls, [])
        out = self.output()
        self.assertEqual(out.count("error: invalid user id:"), 3)

    def test_unknownCommand(self):
        """
        An unknown command is answered locally, pointing to Help.
        """
        self.type("Frobnicate now\n")
        self.assertEqual(self.client.calls, [])
        self.assertEqual(
            self.output(),
            "error: unknown command: Frobnicate (type Help for a list)\nMain-Prompt> ",
        )

    def test_subCommandsAtMainPrompt(self):
        """
        Read, Delete, Send and Done at the main prompt are answered locally:
        they need SetUser first.
        """
        self.type("Read\nDelete\nSend bob\nDone\n")
        self.assertEqual(self.client.calls, [])
        out = self.output()
        for name in ["Read", "Delete", "Send", "Done"]:
            self.assertIn("error: {} works only after SetUser <userid>".format(name), out)

    def test_setUser(self):
        """
        A successful SetUser shows the server's text and switches to the
        user's sub-prompt.
        """
        self.selectBob()

    def test_setUserUnknown(self):
        """
        SetUser for a user that does not exist shows the error and stays at
        the main prompt.
        """
        self.type("SetUser carol\n")
        self.lastCall("selectUser", "carol").errback(ServerError("no such user: carol"))
        self.assertEqual(self.output(), "error: no such user: carol\nMain-Prompt> ")

    def test_switchUser(self):
        """
        SetUser at the sub-prompt switches to the new user's sub-prompt.
        """
        self.selectBob()
        self.type("setuser Alice\n")
        self.lastCall("selectUser", "alice").callback("alice has 0 messages")
        self.assertEqual(self.output(), "alice has 0 messages\nSub-Prompt-alice> ")

    def test_read(self):
        """
        Read shows the message as its headers, a blank line and its body.
        """
        self.selectBob()
        self.type("Read\n")
        self.lastCall("readMessage").callback(
            b"From: alice@localhost\nTo: bob@localhost\n\nHello Bob\n.dot\n"
        )
        self.assertEqual(
            self.output(),
            "From: alice@localhost\nTo: bob@localhost\n\nHello Bob\n.dot\n"
            "Sub-Prompt-bob> ",
        )

    def test_readControlCharacters(self):
        """
        Terminal control sequences in a message are shown escaped, not sent
        to the terminal; bytes that are not UTF-8 are shown as replacement
        characters.
        """
        self.selectBob()
        self.type("Read\n")
        self.lastCall("readMessage").callback(b"Subject: \x1b[2Jhi\n\nbody\r\xff\n")
        self.assertEqual(
            self.output(),
            "Subject: ^[[2Jhi\n\nbody^M\ufffd\nSub-Prompt-bob> ",
        )

    def test_readNoMoreMail(self):
        """
        Read with nothing left shows the server's error.
        """
        self.selectBob()
        self.type("read\n")
        self.lastCall("readMessage").errback(ServerError("No More Mail"))
        self.assertEqual(self.output(), "error: No More Mail\nSub-Prompt-bob> ")

    def test_delete(self):
        """
        Delete asks the server and shows its answer.
        """
        self.selectBob()
        self.type("Delete\n")
        self.lastCall("deleteMessage").callback("message deleted")
        self.assertEqual(self.output(), "message deleted\nSub-Prompt-bob> ")

    def test_done(self):
        """
        Done ends the user session and goes back to the main prompt.
        """
        self.selectBob()
        self.type("Done\n")
        self.lastCall("done").callback("goodbye bob")
        self.assertEqual(self.output(), "goodbye bob\nMain-Prompt> ")

    def test_defaultText(self):
        """
        A success reply without text still says what happened.
        """
        self.type("Adduser bob\n")
        self.lastCall("addUser", "bob").callback("")
        self.assertEqual(self.output(), "user bob added\nMain-Prompt> ")

    def test_helpMain(self):
        """
        Help at the main prompt lists only the commands usable there.
        """
        self.type("Help\n")
        out = self.output()
        for name in ["Listusers", "Adduser <userid>", "SetUser <userid>", "Quit", "Help"]:
            self.assertIn(name, out)
        for name in ["Read", "Delete", "Send", "Done"]:
            self.assertNotIn(name, out)
        self.assertTrue(out.endswith("\nMain-Prompt> "))
        self.assertEqual(self.client.calls, [])

    def test_helpSub(self):
        """
        Help at the sub-prompt lists the mail commands too.
        """
        self.selectBob()
        self.type("HELP\n")
        out = self.output()
        names = ["Listusers", "SetUser", "Read", "Delete", "Send <receiverid>", "Done", "Quit"]
        for name in names:
            self.assertIn(name, out)
        self.assertTrue(out.endswith("\nSub-Prompt-bob> "))

    def test_unexpectedFailure(self):
        """
        A failure that is not a server reply is shown as one error line and
        logged; the console carries on.
        """
        self.type("Listusers\n")
        self.lastCall("listUsers").errback(RuntimeError("boom"))
        self.assertEqual(self.output(), "error: boom\nMain-Prompt> ")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class SendTests(ConsoleTestsMixin, SynchronousTestCase):
    def setUp(self):
        self.start()
        self.selectBob()

    def test_sendAsksServerFirst(self):
        """
        Send asks the server about the receiver and shows C{Type Message: }
        only once the server accepts.
        """
        self.type("Send alice\n")
        d = self.lastCall("startSend", "alice")
        self.assertEqual(self.output(), "")
        d.callback("send the message")
        self.assertEqual(self.output(), "Type Message: ")

    def test_sendMessage(self):
        """
        Lines up to one holding C{###} are the message, with the text before
        C{###} on that line kept; command words inside it are not run.
        """
        self.type("Send alice\n")
        self.lastCall("startSend", "alice").callback("go ahead")
        self.output()
        self.type("Hello Alice,\nDelete\n.dot line\r\nbye ### ignored\n")
        d = self.lastCall("sendBody", b"Hello Alice,\nDelete\n.dot line\nbye \n")
        self.assertEqual(self.output(), "")
        d.callback("message delivered to alice")
        self.assertEqual(self.output(), "message delivered to alice\nSub-Prompt-bob> ")

    def test_sendMarkerAlone(self):
        """
        A line holding only C{###} ends the message without adding a line.
        """
        self.type("Send alice\n")
        self.lastCall("startSend", "alice").callback("")
        self.type("one\n###\n")
        self.lastCall("sendBody", b"one\n").callback("")
        self.assertTrue(self.output().endswith("message sent\nSub-Prompt-bob> "))

    def test_sendRefused(self):
        """
        When the server refuses the receiver, the error is shown, no
        message is read, and the next line is a command again.
        """
        self.type("Send carol\nListusers\n")
        self.lastCall("startSend", "carol").errback(ServerError("no such user: carol"))
        self.assertEqual(self.output(), "error: no such user: carol\nSub-Prompt-bob> ")
        self.lastCall("listUsers")

    def test_sendFailsAfterBody(self):
        """
        A refusal after the body (message too large) is shown as an error.
        """
        self.type("Send alice\n")
        self.lastCall("startSend", "alice").callback("")
        self.type("x###\n")
        self.lastCall("sendBody", b"x\n").errback(ServerError("message too large"))
        self.assertTrue(self.output().endswith("error: message too large\nSub-Prompt-bob> "))

    def test_sendInvalidReceiver(self):
        """
        An invalid receiver id is refused locally.
        """
        self.type("Send a/b\n")
        self.assertEqual(self.client.calls[-1][0], "selectUser")
        self.assertIn("error: invalid user id", self.output())

    def test_endOfInputInMessage(self):
        """
        End of input inside a message discards it: no body is sent, the
        connection is dropped so the server stores nothing, and the exit
        code is 0.
        """
        self.type("Send alice\n")
        self.lastCall("startSend", "alice").callback("")
        self.output()
        self.type("half a message\n")
        self.endInput()
        self.assertEqual(self.output(), "message discarded: input ended before ###\n")
        self.assertNotIn("sendBody", [call[0] for call in self.client.calls])
        self.assertTrue(self.client.disconnected)
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 0)

    def test_endOfInputWhileAsking(self):
        """
        End of input while the server is being asked about the receiver
        waits for the answer; if accepted, the empty message is discarded.
        """
        self.type("Send alice\n")
        self.endInput()
        self.assertFalse(self.transport.disconnecting)
        self.lastCall("startSend", "alice").callback("")
        self.assertIn("message discarded", self.output())
        self.assertTrue(self.client.disconnected)
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 0)


class FlowTests(ConsoleTestsMixin, SynchronousTestCase):
    def setUp(self):
        self.start()

    def test_oneCommandInFlight(self):
        """
        Lines that arrive together are run one at a time: the next only
        after the previous one is answered, with input paused meanwhile.
        """
        self.type("Listusers\nAdduser bob\nHelp\nListusers\n")
        self.assertEqual([call[0] for call in self.client.calls], ["listUsers"])
        self.assertEqual(self.transport.producerState, "paused")
        self.assertTrue(self.console.paused)
        self.lastCall("listUsers").callback(["alice"])
        self.assertEqual([call[0] for call in self.client.calls], ["listUsers", "addUser"])
        self.lastCall("addUser", "bob").callback("created")
        self.assertEqual(
            [call[0] for call in self.client.calls], ["listUsers", "addUser", "listUsers"]
        )
        answers = self.output().split("Main-Prompt> ")
        self.assertEqual(answers[:2], ["alice\n", "created\n"])
        self.assertTrue(answers[2].startswith("commands:\n"))
        self.assertEqual(answers[3:], [""])

    def test_quit(self):
        """
        Quit shows the server's reply, closes standard output and exits 0.
        """
        self.type("Quit\n")
        self.lastCall("quit").callback("bye")
        self.assertEqual(self.output(), "bye\n")
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 0)

    def test_linesAfterQuitIgnored(self):
        """
        Lines after Quit are not run.
        """
        self.type("Quit\nListusers\n")
        self.lastCall("quit").callback("bye")
        self.assertEqual([call[0] for call in self.client.calls], ["quit"])

    def test_quitConnectionLost(self):
        """
        If the server vanishes instead of answering Quit, that is one error
        line and exit code 1.
        """
        self.type("Quit\n")
        self.client.serverGone()
        self.assertEqual(self.output(), "error: connection to the server lost\n")
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 1)

    def test_endOfInputQuits(self):
        """
        End of input at the prompt acts as Quit, exit code 0.
        """
        self.endInput()
        self.lastCall("quit").callback("bye")
        self.assertEqual(self.output(), "bye\n")
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 0)

    def test_endOfInputAfterPending(self):
        """
        End of input while a command is pending quits only after that
        command is answered and shown, and after the lines still buffered.
        """
        self.type("Listusers\nAdduser bob\n")
        self.endInput()
        self.assertEqual([call[0] for call in self.client.calls], ["listUsers"])
        self.lastCall("listUsers").callback(["alice"])
        self.lastCall("addUser", "bob").callback("created")
        self.lastCall("quit").callback("bye")
        self.assertEqual(
            self.output(), "alice\nMain-Prompt> created\nMain-Prompt> bye\n"
        )
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 0)

    def test_lastLineWithoutNewline(self):
        """
        A last line with no newline before end of input is still run.
        """
        self.type("Listusers")
        self.assertEqual(self.client.calls, [])
        self.endInput()
        self.lastCall("listUsers").callback([])
        self.lastCall("quit").callback("bye")
        self.assertEqual(self.output(), "no users\nMain-Prompt> bye\n")

    def test_serverGoneAtPrompt(self):
        """
        A server that goes away while the user is at the prompt is reported
        in one line on a line of its own, and the exit code is 1.
        """
        self.client.serverGone("the server closed the connection")
        self.assertEqual(self.output(), "\nerror: the server closed the connection\n")
        self.assertTrue(self.transport.disconnecting)
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 1)

    def test_serverGoneWithPendingCommand(self):
        """
        A server that goes away with a command pending gives one line, not
        one for the command and one for the connection.
        """
        self.type("Listusers\n")
        self.client.serverGone()
        self.assertEqual(self.output(), "error: connection to the server lost\n")
        self.closeStdio()
        self.assertEqual(self.successResultOf(self.console.finished), 1)

    def test_serverGoneWhileTypingMessage(self):
        """
        A server that goes away while a message is typed ends the console
        with one line and exit code 1; later lines are not run.
        """
        self.selectBob()
        self.type("Send alice\n")
        self.lastCall("startSend", "alice").callback("")
        self.output()
        self.client.serverGone()
        self.assertEqual(self.output(), "\nerror: connection to the server lost\n")
        self.type("more text\n###\nListusers\n")
        self.assertNotIn("sendBody", [call[0] for call in self.client.calls])
        self.assertNotIn("listUsers", [call[0] for call in self.client.calls])

    def test_stdoutGone(self):
        """
        If standard output goes away the console hangs up and exits 1.
        """
        self.console.writeConnectionLost()
        self.assertTrue(self.client.disconnected)
        self.assertEqual(self.successResultOf(self.console.finished), 1)


class OptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """
        With no arguments the console connects to localhost port 9025.
        """
        options = Options()
        options.parseOptions([])
        endpoint, where = console.endpointFromOptions(MemoryReactorClock(), options)
        self.assertEqual(where, "localhost port 9025")

    def test_hostAndPort(self):
        """
        HOST and PORT may be given as arguments.
        """
        options = Options()
        options.parseOptions(["mail.example", "2525"])
        endpoint, where = console.endpointFromOptions(MemoryReactorClock(), options)
        self.assertEqual(where, "mail.example port 2525")

    def test_badPort(self):
        """
        A port that is not a number from 1 to 65535 is a usage error.
        """
        for port in ["x", "0", "70000"]:
            self.assertRaises(usage.UsageError, Options().parseOptions, ["h", port])

    def test_tooManyArguments(self):
        """
        More than HOST and PORT is a usage error.
        """
        self.assertRaises(usage.UsageError, Options().parseOptions, ["h", "1", "x"])

    def test_connectAndHost(self):
        """
        C{--connect} together with HOST is a usage error.
        """
        self.assertRaises(
            usage.UsageError, Options().parseOptions, ["--connect", "unix:/x", "h"]
        )

    def test_connectEndpoint(self):
        """
        C{--connect} takes a client endpoint description.
        """
        options = Options()
        options.parseOptions(["--connect", "unix:/tmp/mail.sock"])
        endpoint, where = console.endpointFromOptions(MemoryReactorClock(), options)
        self.assertEqual(where, "unix:/tmp/mail.sock")
        self.assertEqual(endpoint._path, "/tmp/mail.sock")

    def test_badEndpoint(self):
        """
        A C{--connect} value that is not an endpoint description is a usage
        error, not a traceback.
        """
        options = Options()
        options.parseOptions(["--connect", "bogus:what"])
        self.assertRaises(
            usage.UsageError, console.endpointFromOptions, MemoryReactorClock(), options
        )


class MainTests(SynchronousTestCase):
    def setUp(self):
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def test_usageError(self):
        """
        A bad option gives one line on standard error and exit code 2.
        """
        d = main(MemoryReactorClock(), "--bogus")
        self.assertEqual(self.failureResultOf(d, SystemExit).value.code, 2)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn("bogus", lines[0])

    def test_badEndpointExit(self):
        """
        A bad C{--connect} description gives one line and exit code 2.
        """
        d = main(MemoryReactorClock(), "--connect", "tcp:host=x:port=notanumber")
        self.assertEqual(self.failureResultOf(d, SystemExit).value.code, 2)
        self.assertEqual(len(self.stderr.getvalue().splitlines()), 1)

    def test_noServer(self):
        """
        When the connection is refused, one line says where it tried and
        why, and the exit code is 1.
        """
        reactor = MemoryReactorClock()
        d = main(reactor, "--connect", "tcp:127.0.0.1:9999")
        host, port, factory, timeout, bindAddress = reactor.tcpClients[0]
        self.assertEqual((host, port), ("127.0.0.1", 9999))
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertEqual(self.failureResultOf(d, SystemExit).value.code, 1)
        lines = self.stderr.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn("cannot connect to tcp:127.0.0.1:9999", lines[0])
        self.assertIn("refused", lines[0])


class FakeTerminal:
    """
    Records the echo changes the console asks of a terminal.
    """

    def __init__(self):
        self.changes = []

    def echo(self, on):
        self.changes.append(on)


class PasswordTests(ConsoleTestsMixin, SynchronousTestCase):
    def setUp(self):
        self.terminal = FakeTerminal()
        self.start(capabilities=["PIPELINING", "AUTH"], terminal=self.terminal)

    def test_setUserAsksPassword(self):
        """
        With passwords on, SetUser asks "Password: " without echo and logs in
        with the next line, spaces kept.
        """
        self.type("SetUser bob\n")
        self.lastCall("selectUser", "bob").callback("send PASS <password> for bob")
        self.assertEqual(self.output(), "Password: ")
        self.assertEqual(self.terminal.changes, [False])
        self.type(" two words \n")
        self.assertEqual(self.terminal.changes, [False, True])
        self.lastCall("login", " two words ").callback("bob has 2 messages")
        self.assertEqual(self.output(), "\nbob has 2 messages\nSub-Prompt-bob> ")

    def test_wrongPassword(self):
        """
        A refused password is reported and leaves the user unselected.
        """
        self.type("SetUser bob\n")
        self.lastCall("selectUser", "bob").callback("send PASS")
        self.output()
        self.type("nope\n")
        self.lastCall("login", "nope").errback(ServerError("login failed"))
        self.assertEqual(self.output(), "\nerror: login failed\nMain-Prompt> ")
        self.assertIsNone(self.console.userid)

    def test_passwordNotRunAsCommand(self):
        """
        A password that looks like a command is sent as the password, not
        run, even when typed ahead in the same read.
        """
        self.type("SetUser bob\nQuit\n")
        self.lastCall("selectUser", "bob").callback("send PASS")
        self.lastCall("login", "Quit").callback("bob has 0 messages")
        self.assertNotIn("quit", [c[0] for c in self.client.calls])

    def test_adduserAsksTwice(self):
        """
        With passwords on, Adduser asks for the password twice and sends it.
        """
        self.type("Adduser bob\n")
        self.assertEqual(self.output(), "Password: ")
        self.type("pw 1\n")
        self.assertEqual(self.output(), "\nAgain: ")
        self.type("pw 1\n")
        self.lastCall("addUser", "bob", "pw 1").callback("user bob created")
        self.assertEqual(self.output(), "\nuser bob created\nMain-Prompt> ")
        self.assertEqual(self.terminal.changes, [False, True, False, True])

    def test_adduserMismatch(self):
        """
        Two different passwords are reported and nothing is sent.
        """
        self.type("Adduser bob\none\ntwo\n")
        self.assertIn("error: the passwords differ; user not added\nMain-Prompt> ",
                      self.output())
        self.assertEqual(self.client.calls, [])

    def test_endOfInputRestoresEcho(self):
        """
        Input ending at the password prompt turns echo back on and quits.
        """
        self.type("SetUser bob\n")
        self.lastCall("selectUser", "bob").callback("send PASS")
        self.endInput()
        self.assertEqual(self.terminal.changes[-1], True)


class PipedPasswordTests(ConsoleTestsMixin, SynchronousTestCase):
    def test_pipedPassword(self):
        """
        From a pipe (no terminal) the password is simply the next line.
        """
        self.start(capabilities=["AUTH"])
        self.type("SetUser bob\nsecret\nRead\n")
        self.lastCall("selectUser", "bob").callback("send PASS")
        self.assertEqual(self.output(), "Password: ")
        self.lastCall("login", "secret").callback("bob has 0 messages")
        self.assertEqual(self.output(), "bob has 0 messages\nSub-Prompt-bob> ")
        self.lastCall("readMessage")
