"""
Property-based checks of the web API against its own OpenAPI document
(schemathesis, on hypothesis), over a real socket against C{twistd -n
simplemail --web ...}: for generated requests to every operation (but the
endless event stream), no answer is a 5xx and every answer matches the
document (status code, content type, body schema).  Bounded in examples
and time.
"""

import json
import os
import urllib.request

from twisted.trial.unittest import SynchronousTestCase

from tests.programs import missing
from tests.serverprocess import ServerProcess, freePort

#: Examples per operation, per mode.
EXAMPLES = int(os.environ.get("SIMPLEMAIL_SCHEMA_EXAMPLES", "10"))


class OpenAPIConformanceTests(SynchronousTestCase):
    """
    The API answers as its OpenAPI document says (passwords off).
    """

    passwords = False

    def setUp(self):
        try:
            import schemathesis  # noqa: F401
        except ImportError:
            missing("schemathesis", "pip install -e '.[test]'")
        self.webPort = freePort()
        spool = self.mktemp()
        extra = ["--web", "tcp:{}:interface=127.0.0.1".format(self.webPort),
                 "--max-message-size", "100000"]
        self.headers = {}
        if self.passwords:
            extra += ["--passwords", spool + ".passwords"]
        self.server = ServerProcess(spool, extraArgs=extra)
        self.addCleanup(self.server.close)
        self.server.start()
        with self.server.connect() as client:
            for user in (b"alice", b"bob"):
                client.command(b"ADDU " + user + (b" wonderland" if self.passwords else b""))
            if self.passwords:
                client.command(b"USER bob")
                client.command(b"PASS wonderland")
            else:
                client.command(b"USER bob")
            client.send("alice", b"a message to find\n")
        self.base = "http://127.0.0.1:{}/api/v1".format(self.webPort)
        if self.passwords:
            # A session, not Basic: Basic costs a password hash a request.
            login = urllib.request.Request(
                self.base + "/login", method="POST",
                data=json.dumps({"user": "alice", "password": "wonderland"}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(login, timeout=10) as response:
                cookie = response.headers["Set-Cookie"].split(";", 1)[0]
            self.headers = {"Cookie": cookie, "X-Simplemail": "1"}

    def test_conformance(self):
        """Generated requests, valid and not, never get a 5xx nor an answer the document does not allow."""
        import schemathesis
        from hypothesis import HealthCheck, given, settings
        from hypothesis.errors import Unsatisfiable
        from schemathesis import GenerationMode
        from schemathesis.checks import (content_type_conformance, not_a_server_error,
                                         response_schema_conformance,
                                         status_code_conformance)

        with urllib.request.urlopen(self.base + "/openapi.json", timeout=10) as response:
            document = json.loads(response.read())
        schema = schemathesis.openapi.from_dict(document)
        checks = [not_a_server_error, status_code_conformance, content_type_conformance,
                  response_schema_conformance]
        tried = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path.endswith("/events"):
                continue  # an endless stream: tested in test_web and test_web_e2e
            if self.passwords and operation.path in ("/logout", "/login"):
                # Logout would end the session the rest uses; every failed
                # login is answered 2 s late (the login throttle): the
                # login's answers are checked in test_web.
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(max_examples=EXAMPLES, deadline=None, database=None,
                          derandomize=True, suppress_health_check=list(HealthCheck))
                @given(operation.as_strategy(generation_mode=mode))
                def check(case):
                    response = case.call(base_url=self.base, timeout=10, headers=self.headers)
                    case.validate_response(response, checks=checks)

                try:
                    check()
                except Unsatisfiable:
                    # Nothing to make invalid (an operation without
                    # parameters or body).
                    self.assertEqual(mode, GenerationMode.NEGATIVE, operation.label)
                    continue
                tried += 1
        self.assertGreaterEqual(tried, 12)


class PasswordOpenAPIConformanceTests(OpenAPIConformanceTests):
    """
    The API answers as its OpenAPI document says (passwords on, logged in
    as alice: other mailboxes are 403, logins mostly 401).
    """

    passwords = True
