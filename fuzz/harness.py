"""
What every fuzz target shares: instrumenting the code under test when
atheris is there, running a target under libFuzzer, and the property
checks on replies.

A target module imports the code it tests inside L{instrumented}, defines
C{check(data)} (plain Python: the regression tests in
tests/test_fuzz_findings.py call it without atheris) and ends with::

    if __name__ == "__main__":
        harness.main(check)
"""

import contextlib
import os
import re
import sys
import zlib

try:
    import atheris
except ImportError:  # the tests replay findings without it
    atheris = None

#: The targets, in the order the bounded run goes through them: the module
#: fuzz/fuzz_<name>.py and its seed corpus fuzz/corpus/<name>/.
TARGETS = (
    "wire",
    "line_server",
    "pop3",
    "smtp_auth",
    "headers",
    "mime",
    "web_api",
    "passwords",
    "roundtrip",
    "imap",
    "structure",
    "smtp_ingress",
)


def fuzzing():
    """
    Whether this process is a fuzz target run under atheris (C{python -m
    fuzz.fuzz_<name>}), not a test importing a target's C{check}.
    """
    return atheris is not None and os.path.basename(sys.argv[0]).startswith("fuzz_")


def instrumented():
    """
    A context manager inside which imported modules get atheris's coverage
    instrumentation when L{fuzzing} (else a no-op).
    """
    if not fuzzing():
        return contextlib.nullcontext()
    return atheris.instrument_imports()


def main(check):
    """
    Fuzz C{check} with the command line's libFuzzer options.
    """
    if atheris is None:
        sys.exit("atheris is not installed: pip install -e '.[fuzz]'")
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


class FailureLog:
    """
    The failures logged (C{log.failure}) while a check runs: a server must
    log none, whatever it is sent.
    """

    def __init__(self):
        from twisted.logger import globalLogPublisher

        self.failures = []
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event):
        if "log_failure" in event:
            self.failures.append(event)

    def clear(self):
        del self.failures[:]

    def assertNone(self):
        assert not self.failures, self.failures


def feed(protocol, transport, stream, pump=None):
    """
    Hand C{stream} to C{protocol} in chunks (the whole of it at once, or
    pieces of 1 to 23 bytes: which comes from a checksum of it), until the
    transport is closing; C{pump()} after each chunk.
    """
    checksum = zlib.crc32(stream)
    size = len(stream) if checksum % 4 == 0 else 1 + checksum % 23
    for start in range(0, len(stream), max(size, 1)):
        if transport.disconnecting:
            break
        protocol.dataReceived(stream[start:start + size])
        if pump is not None:
            pump()


_STATUS = re.compile(rb"(\+OK|-ERR)( [^\r\n]*)?\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def isOneLineText(text):
    """
    Whether C{text} (L{str}) is printable one-line text: no control
    character (C0, DEL, C1), as L{twisted_mail.wire.oneLine} leaves it.
    """
    return _CONTROL.search(text) is None


def checkStatusLine(line):
    """
    Assert that C{line} (without its CRLF) is one well-formed status line of
    the line protocol or POP3: C{+OK} or C{-ERR}, then optionally a space
    and UTF-8 text without control characters.
    """
    assert _STATUS.match(line), line
    text = line.decode("utf-8")
    assert isOneLineText(text), line


class Replies:
    """
    A reader of a server's output, as a client reads it: CRLF-terminated
    lines, status lines, multi-line blocks ended by C{.}.
    """

    def __init__(self, output):
        self.output = output
        self.at = 0

    def line(self, data=False):
        """
        The next CRLF-terminated line (without its CRLF), checked to hold
        no other CR or LF; L{None} at the end of the output.

        @param data: a data line of a multi-line block, where a CR that does
            not end the line is data (docs/protocol.rst); it never ends in
            a CR, though.
        """
        if self.at == len(self.output):
            return None
        end = self.output.find(b"\r\n", self.at)
        assert end != -1, ("output does not end with CRLF", self.output[self.at:])
        line = self.output[self.at:end]
        assert b"\n" not in line, line
        if data:
            assert not line.endswith(b"\r"), line
        else:
            assert b"\r" not in line, line
        self.at = end + 2
        return line

    def status(self):
        """
        The next status line, checked; L{None} at the end of the output.
        """
        line = self.line()
        if line is not None:
            checkStatusLine(line)
        return line

    def block(self):
        """
        The data lines of a multi-line block up to its C{.} line, unstuffed.
        """
        lines = []
        while True:
            line = self.line(data=True)
            assert line is not None, "a multi-line block without its end"
            if line == b".":
                return lines
            lines.append(line[1:] if line.startswith(b".") else line)

    def atEnd(self):
        return self.at == len(self.output)
