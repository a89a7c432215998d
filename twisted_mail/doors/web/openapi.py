"""
The OpenAPI 3.0 document of the JSON API, served at
C{/api/v1/openapi.json}.  The contract is ACCESS.md; this says the same
for programs.
"""

_USER = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_ID = {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}
_FOLDER = {"type": "string", "minLength": 1, "description":
           "A folder name: Unicode, '/' between levels, at most 255 UTF-8 bytes, "
           "no control character, no empty, '.' or '..' level; INBOX in any case "
           "is INBOX."}
_FLAG = {"type": "string", "description":
         "A system flag (\\Seen, \\Answered, \\Flagged, \\Deleted, \\Draft) "
         "or a keyword (an IMAP atom such as $Forwarded)."}


def _ref(name):
    return {"$ref": "#/components/schemas/" + name}


def _json(schema, description):
    return {"description": description,
            "content": {"application/json": {"schema": schema}}}


def _errors(*codes):
    texts = {
        "400": "Bad input (malformed JSON, wrong types, a bad parameter).",
        "401": "Login needed (with passwords on), or the login failed.",
        "403": "Not your mailbox, not yourself, a cookie call without "
               "X-Simplemail: 1, a cross-site request, an unknown host name, or "
               "sign-up turned off (--no-signup).",
        "404": "No such user, message, part or folder.",
        "405": "Method not allowed on this path.",
        "409": "The user or folder exists already.",
        "413": "Too large (the request body or the message).",
        "429": "Too many accounts created from this address; try again later.",
        "503": "Storage failed; nothing was done; try again.",
    }
    return {code: _json(_ref("Error"), texts[code]) for code in codes}


def _userParam():
    return {"name": "user", "in": "path", "required": True, "schema": _USER}


def _idParam():
    return {"name": "id", "in": "path", "required": True, "schema": _ID}


def _folderQuery(description):
    return {"name": "folder", "in": "query", "required": False, "schema": _FOLDER,
            "description": description}


_IN_FOLDER = _folderQuery("The folder that holds the message (default: INBOX, then "
                          "every other folder).")


def _folderPaths(common):
    """
    The folder routes and a message's PATCH (MAILBOX.md).
    """
    named = {"type": "object", "required": ["name"], "properties": {"name": _FOLDER}}
    return {
        "/users/{user}/folders": {
            "parameters": [_userParam()],
            "get": {
                "summary": "The folders, INBOX first, with their message and unread counts.",
                "responses": dict({"200": _json({
                    "type": "object", "required": ["folders"],
                    "properties": {"folders": {"type": "array", "items": _ref("Folder")}},
                }, "The folders.")}, **_errors(*common)),
            },
            "post": {
                "summary": "Create a folder (levels above it need not exist).",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": named}}},
                "responses": dict({"201": _json(named, "Created; its canonical name.")},
                                  **_errors(*common, "409", "413")),
            },
        },
        "/users/{user}/folders/{name}": {
            "parameters": [_userParam(), {
                "name": "name", "in": "path", "required": True, "schema": _FOLDER,
                "description": "The folder name, percent-encoded ('/' as %2F)."}],
            "patch": {
                "summary": "Rename a folder (not INBOX nor a special-use folder: 400); "
                           "its messages keep their ids.",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": named}}},
                "responses": dict({"200": _json(named, "Renamed; the new name.")},
                                  **_errors(*common, "409", "413")),
            },
            "delete": {
                "summary": "Delete a folder and its messages for good (not INBOX: 400).",
                "responses": dict({"204": {"description": "Deleted."}},
                                  **_errors(*common)),
            },
        },
    }


def _patchMessage(common):
    return {
        "summary": "Change a message's flags (durably) and/or move it to another "
                   "folder (it keeps its id); the summary as it is now.",
        "parameters": [_IN_FOLDER],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {
                "flags": {"type": "object", "properties": {
                    "add": {"type": "array", "items": _FLAG},
                    "remove": {"type": "array", "items": _FLAG},
                }},
                "folder": _FOLDER,
            },
        }}}},
        "responses": dict({"200": _json(_ref("Summary"), "The message now.")},
                          **_errors(*common, "413")),
    }


def openAPIDocument(passwords=False):
    """
    The document, as a L{dict} ready for C{json.dumps}.

    @param passwords: whether the server runs with passwords (new users
        then need one; a message's sender defaults to the logged-in user).
    """
    newUser = {"user": _USER}
    if passwords:
        newUser["password"] = {"type": "string", "minLength": 1}
    sender = dict(_USER, description="The sender (with passwords on: yourself, the default).")
    auth = [{"cookie": []}, {"basic": []}, {}]
    common = ("400", "401", "403", "404", "503")
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "simplemail web API",
            "version": "1",
            "description": (
                "Read, delete and send the mail of a simplemail server. "
                "Errors are {\"error\": text}. With --passwords every call but "
                "login and session needs a session cookie (POST /login) or HTTP "
                "Basic credentials; state-changing cookie calls need the header "
                "X-Simplemail: 1."),
        },
        "servers": [{"url": "/api/v1"}],
        "security": auth,
        "components": {
            "securitySchemes": {
                "cookie": {"type": "apiKey", "in": "cookie", "name": "simplemail_session"},
                "basic": {"type": "http", "scheme": "basic"},
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Folder": {
                    "type": "object",
                    "required": ["name", "special", "total", "unseen"],
                    "properties": {
                        "name": _FOLDER,
                        "special": {"type": "string", "nullable": True, "enum": [
                            "sent", "drafts", "trash", "junk", "archive", None]},
                        "total": {"type": "integer", "minimum": 0},
                        "unseen": {"type": "integer", "minimum": 0},
                    },
                },
                "Summary": {
                    "type": "object",
                    "required": ["id", "from", "to", "subject", "date", "size",
                                 "snippet", "attachments", "folder", "flags"],
                    "properties": {
                        "id": _ID,
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "subject": {"type": "string"},
                        "date": {"type": "string", "description":
                                 "ISO 8601 UTC, from the Date header (or the "
                                 "arrival time; empty in a message view when "
                                 "the message has no Date that parses)."},
                        "size": {"type": "integer", "minimum": 0},
                        "snippet": {"type": "string"},
                        "attachments": {"type": "integer", "minimum": 0},
                        "folder": _FOLDER,
                        "flags": {"type": "array", "items": _FLAG},
                    },
                },
                "Part": {
                    "type": "object",
                    "required": ["part", "filename", "contentType", "size"],
                    "properties": {
                        "part": {"type": "integer", "minimum": 1},
                        "filename": {"type": "string"},
                        "contentType": {"type": "string"},
                        "size": {"type": "integer", "minimum": 0},
                    },
                },
                "Message": {
                    "allOf": [_ref("Summary"), {
                        "type": "object",
                        "required": ["headers", "text", "html", "parts"],
                        "properties": {
                            "headers": {"type": "array", "items": {
                                "type": "array", "minItems": 2, "maxItems": 2,
                                "items": {"type": "string"}}},
                            "text": {"type": "string"},
                            "html": {"type": "string", "nullable": True},
                            "parts": {"type": "array", "items": _ref("Part")},
                        },
                    }],
                },
            },
        },
        "paths": {
            "/users": {
                "get": {
                    "summary": "The user ids, sorted.",
                    "responses": dict({"200": _json({
                        "type": "object", "required": ["users"],
                        "properties": {"users": {"type": "array", "items": _USER}},
                    }, "The users.")}, **_errors("401", "503")),
                },
                "post": {
                    "summary": "Create a user (with a password when passwords are on).",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["user", "password"] if passwords else ["user"],
                            "properties": newUser,
                        }}}},
                    "responses": dict({"201": _json({
                        "type": "object", "required": ["user"],
                        "properties": {"user": _USER},
                    }, "Created.")}, **_errors("400", "401", "403", "409", "413", "429", "503")),
                },
            },
            "/users/{user}/messages": {
                "parameters": [_userParam()],
                "get": {
                    "summary": "A page of a folder (INBOX by default), newest first.",
                    "parameters": [
                        _folderQuery("The folder to list (default INBOX)."),
                        {"name": "start", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 0, "default": 0}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                    "default": 50}},
                        {"name": "q", "in": "query", "required": False,
                         "description": "A search (MAILBOX.md, docs/search.rst): "
                                        "only the matches, of every folder unless "
                                        "folder is given; total counts them.  At "
                                        "most 2000 characters are parsed; 1000 "
                                        "always fit an HTTP request line (16 KB) "
                                        "however they are encoded.",
                         "schema": {"type": "string", "maxLength": 1000}},
                    ],
                    "responses": dict({"200": _json({
                        "type": "object",
                        "required": ["user", "total", "start", "messages"],
                        "properties": {
                            "user": _USER,
                            "total": {"type": "integer", "minimum": 0},
                            "start": {"type": "integer", "minimum": 0},
                            "messages": {"type": "array", "items": _ref("Summary")},
                            "matched": {"type": "array", "items": {"type": "string"},
                                        "description": "With q: the words looked "
                                                       "for, without case or accents."},
                        },
                    }, "The page.")}, **_errors(*common)),
                },
                "post": {
                    "summary": "Send a plain-text message to {user}, durably.",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["text"] if passwords else ["from", "text"],
                            "properties": {
                                "from": sender,
                                "subject": {"type": "string"},
                                "text": {"type": "string"},
                                "keepCopy": {"type": "boolean", "description":
                                             "Keep a copy, read, in the sender's Sent."},
                            },
                        }}}},
                    "responses": dict({"201": _json({
                        "type": "object", "required": ["id"],
                        "properties": {"id": _ID, "copy": dict(
                            _ID, nullable=True, description="The copy in Sent (keepCopy); "
                            "null if it could not be kept.")},
                    }, "Stored in {user}'s INBOX.")}, **_errors(*common, "413")),
                },
            },
            "/users/{user}/messages/{id}": {
                "parameters": [_userParam(), _idParam()],
                "get": {
                    "summary": "One message: summary, headers, text, HTML, parts. "
                               "With seen=1 (the page opening it) it is marked \\Seen.",
                    "parameters": [_IN_FOLDER, {
                        "name": "seen", "in": "query", "required": False,
                        "schema": {"type": "integer", "enum": [0, 1], "default": 0}}],
                    "responses": dict({"200": _json(_ref("Message"), "The message.")},
                                      **_errors(*common)),
                },
                "patch": _patchMessage(common),
                "delete": {
                    "summary": "Delete the message, durably.",
                    "parameters": [_IN_FOLDER],
                    "responses": dict({"204": {"description": "Deleted."}},
                                      **_errors(*common)),
                },
            },
            "/users/{user}/messages/{id}/raw": {
                "parameters": [_userParam(), _idParam()],
                "get": {
                    "summary": "The message as READM shows it (LF line ends).",
                    "parameters": [_IN_FOLDER],
                    "responses": dict({"200": {
                        "description": "The message.",
                        "content": {"message/rfc822": {"schema": {
                            "type": "string", "format": "binary"}}},
                    }}, **_errors(*common)),
                },
            },
            "/users/{user}/messages/{id}/html": {
                "parameters": [_userParam(), _idParam()],
                "get": {
                    "summary": "The HTML part, for the page's sandboxed frame.",
                    "parameters": [_IN_FOLDER],
                    "responses": dict({"200": {
                        "description": "The HTML (served with a sandbox CSP).",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }}, **_errors(*common)),
                },
            },
            "/users/{user}/messages/{id}/parts/{part}": {
                "parameters": [_userParam(), _idParam(), {
                    "name": "part", "in": "path", "required": True,
                    "schema": {"type": "integer", "minimum": 1}}],
                "get": {
                    "summary": "One attachment's decoded bytes, as a download.",
                    "parameters": [_IN_FOLDER],
                    "responses": dict({"200": {
                        "description": "The attachment: its own type for a few inert "
                                       "types (images, PDF, plain text...), else "
                                       "application/octet-stream.",
                        "content": {"*/*": {"schema": {
                            "type": "string", "format": "binary"}}},
                    }}, **_errors(*common)),
                },
            },
            "/users/{user}/events": {
                "parameters": [_userParam()],
                "get": {
                    "summary": "Server-sent events: `event: message` with a summary "
                               "as `data:` for each new message (any folder), "
                               "`event: flags` with the summary as it is now, "
                               "`event: expunge` with {id, folder}, `event: folders` "
                               "with {} when folders change.",
                    "responses": dict({"200": {
                        "description": "An endless event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }}, **_errors(*common)),
                },
            },
            **_folderPaths(common),
            "/login": {
                "post": {
                    "summary": "Log in: a session cookie (HttpOnly, SameSite=Strict).",
                    "security": [{}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {
                            "type": "object", "required": ["user", "password"],
                            "properties": {"user": {"type": "string"},
                                           "password": {"type": "string"}},
                        }}}},
                    "responses": dict({"200": _json({
                        "type": "object", "required": ["user"],
                        "properties": {"user": _USER},
                    }, "Logged in.")}, **_errors("400", "401", "403", "413")),
                },
            },
            "/logout": {
                "post": {
                    "summary": "End the session.",
                    "security": [{}],
                    "responses": dict({"204": {"description": "Logged out."}},
                                      **_errors("403")),
                },
            },
            "/session": {
                "get": {
                    "summary": "Who the session cookie is, and whether passwords are on.",
                    "security": [{}],
                    "responses": {"200": _json({
                        "type": "object", "required": ["user", "passwords"],
                        "properties": {"user": dict(_USER, nullable=True),
                                       "passwords": {"type": "boolean"}},
                    }, "The session.")},
                },
            },
        },
    }
