"""
The log line a worker writes for each event and the supervisor reads back
(L{twisted_mail.service.worker}, L{twisted_mail.service.workers}).
"""

import os
from json.decoder import scanstring as _unquote
from json.encoder import encode_basestring_ascii as _quote

from twisted.logger import InvalidLogLevelError, LogLevel, formatEvent


class _LogWriter:
    """
    A log observer writing each event as one line to a file descriptor (the
    pipe to the supervisor), at once: nothing is lost when the worker exits.

    A line is C{<time>\t<level>\t<namespace>\t<text as a JSON string>}: the
    JSON string keeps newlines and tabs of the text (tracebacks) on one line,
    and both ends are C functions of the json module (this runs for every
    delivery).
    """

    def __init__(self, fd):
        import threading

        self.fd = fd
        self._lock = threading.Lock()

    def __call__(self, event):
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            try:
                text += "\n" + failure.getTraceback()
            except Exception:
                text += "\n(unable to format the traceback)"
        level = event.get("log_level")
        line = "{!r}\t{}\t{}\t{}\n".format(
            event.get("log_time") or 0.0,
            level.name if level is not None else "info",
            event.get("log_namespace", "-"),
            _quote(text),
        ).encode("ascii")
        with self._lock:
            view = memoryview(line)
            while view:
                try:
                    written = os.write(self.fd, view)
                except InterruptedError:
                    continue
                except OSError:
                    return  # the supervisor is gone
                view = view[written:]


def parseLogLine(line):
    """
    Read a line written by L{_LogWriter}.

    @return: C{(time, level, namespace, text)}, or L{None} if C{line} is not
        one (anything else the worker printed).
    """
    parts = line.split(b"\t", 3)
    if len(parts) != 4:
        return None
    try:
        when = float(parts[0])
        level = LogLevel.levelWithName(parts[1].decode("ascii"))
        quoted = parts[3].decode("ascii")
        text, end = _unquote(quoted, 1)
    except (ValueError, UnicodeDecodeError, InvalidLogLevelError):
        return None
    if not quoted.startswith('"') or end != len(quoted):
        return None
    return when, level, parts[2].decode("ascii"), text
