"""
Reading a request of the JSON API: its JSON body, checked field by field,
and its query parameters (numbers, 0/1 switches, a folder name).  A mixin
of L{twisted_mail.doors.web.api.WebAPI}; every bad input is a 400
L{HTTPError} with one line saying what is wrong.
"""

import json
import re

from twisted_mail import errors
from twisted_mail.mail.model import INBOX
from twisted_mail.wire import normalizeUserId

from twisted_mail.doors.web.folders import HTTPError, folderName

_DIGITS = re.compile(r"[0-9]{1,9}\Z")


class RequestInputs:
    """
    The request-reading methods of the API.
    """

    def _json(self, request, fields):
        """
        The request body as a JSON object whose C{fields} (name: (type,
        required)) are checked.
        """
        data = request.content.read() if request.content is not None else b""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, "the request body is not UTF-8")
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            raise HTTPError(400, "the request body is not JSON")
        if not isinstance(body, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        for name, (kind, required) in fields.items():
            if name not in body or body[name] is None:
                if required:
                    raise HTTPError(400, "{} is required".format(name))
                continue
            value = body[name]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise HTTPError(400, "{} must be a {}".format(
                    name, {str: "string", bool: "boolean", dict: "object"}.get(kind, kind.__name__)))
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise HTTPError(400, "{} is not valid Unicode".format(name))
        return body

    def _bodyUser(self, value, name):
        try:
            return normalizeUserId(value)
        except errors.InvalidUserId:
            raise HTTPError(400, "{} is not a valid user id".format(name))

    def _intArg(self, request, name, default, maximum):
        values = request.args.get(name)
        if not values:
            return default
        try:
            value = values[-1].decode("ascii")
        except UnicodeDecodeError:
            value = ""
        if not _DIGITS.match(value):
            raise HTTPError(400, "{} must be a whole number".format(name.decode()))
        value = int(value)
        if maximum is not None and value > maximum:
            raise HTTPError(400, "{} must be at most {}".format(name.decode(), maximum))
        if maximum is not None and value < 1:
            raise HTTPError(400, "{} must be at least 1".format(name.decode()))
        return value

    def _flagArg(self, request, name):
        values = request.args.get(name)
        if not values:
            return False
        if values[-1] not in (b"0", b"1"):
            raise HTTPError(400, "{} must be 0 or 1".format(name.decode()))
        return values[-1] == b"1"

    def _folderArg(self, request, default=INBOX):
        """
        The C{folder} query parameter, canonical, or C{default}.
        """
        values = request.args.get(b"folder")
        if not values:
            return default
        try:
            name = values[-1].decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, "folder is not UTF-8")
        return folderName(name)
