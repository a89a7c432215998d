"""
Drive the web site in tests: raw HTTP requests to the real L{Site} over a
L{StringTransport} (everything in memory, nothing waits), and a parser for
the answers.  Not a test module.
"""

import base64
import json

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport


class Response:
    """
    One HTTP answer: C{code}, C{headers} (lower-case name to list of
    values) and C{body}.
    """

    def __init__(self, code, headers, body):
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name):
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response {} {!r}>".format(self.code, self.body[:200])


def parseResponse(data):
    """
    The first answer in C{data} and what follows it; C{(None, data)} when
    it is not complete yet.
    """
    end = data.find(b"\r\n\r\n")
    if end == -1:
        return None, data
    head = data[:end].decode("latin-1").split("\r\n")
    code = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    rest = data[end + 4:]
    if "content-length" in headers:
        length = int(headers["content-length"][-1])
        if len(rest) < length:
            return None, data
        return Response(code, headers, rest[:length]), rest[length:]
    if headers.get("transfer-encoding", [""])[-1].lower() == "chunked":
        body = b""
        while True:
            line_end = rest.find(b"\r\n")
            if line_end == -1:
                return Response(code, headers, body), b""
            size = int(rest[:line_end].split(b";")[0], 16)
            if size == 0:
                return Response(code, headers, body), rest[line_end + 4:]
            body += rest[line_end + 2:line_end + 2 + size]
            rest = rest[line_end + 4 + size:]
    return Response(code, headers, rest), b""


class WebClient:
    """
    Sends requests to a web factory, each on a new in-memory connection.

    @ivar cookies: cookies set by answers, sent with later requests.
    """

    def __init__(self, factory, peer="127.0.0.1"):
        self.factory = factory
        self.peer = peer
        self.cookies = {}
        self.transports = []

    def connect(self):
        address = IPv4Address("TCP", self.peer, 40000 + len(self.transports))
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 9080), peerAddress=address)
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return protocol, transport

    def raw(self, data):
        """
        Send raw bytes on a new connection; everything written back.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(data)
        return transport

    def request(self, method, path, body=None, json_=None, headers=None, auth=None,
                csrf=True, cookies=True):
        """
        One request; its L{Response}.
        """
        lines = ["{} {} HTTP/1.1".format(method, path), "Connection: close"]
        if "Host" not in (headers or {}):
            lines.append("Host: 127.0.0.1:9080")
        if json_ is not None:
            body = json.dumps(json_).encode("utf-8")
            lines.append("Content-Type: application/json")
        if body is not None:
            lines.append("Content-Length: {}".format(len(body)))
        if csrf:
            lines.append("X-Simplemail: 1")
        if auth is not None:
            token = base64.b64encode("{}:{}".format(*auth).encode("utf-8")).decode()
            lines.append("Authorization: Basic " + token)
        if cookies and self.cookies:
            lines.append("Cookie: " + "; ".join(
                "{}={}".format(k, v) for k, v in self.cookies.items()))
        for name, value in (headers or {}).items():
            lines.append("{}: {}".format(name, value))
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + (body or b"")
        transport = self.raw(data)
        response, _ = parseResponse(transport.value())
        if response is None:
            raise AssertionError("no complete answer: {!r}".format(transport.value()[:500]))
        for cookie in response.headers.get("set-cookie", []):
            pair = cookie.split(";", 1)[0]
            name, _, value = pair.partition("=")
            if value:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return response
