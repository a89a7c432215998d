// The simplemail inbox page.  Plain JavaScript, no framework.  Everything
// that comes from a message is put on the page with textContent or as an
// attribute value, never as HTML; HTML mail is shown only in a sandboxed
// frame served with its own restrictive Content-Security-Policy.
"use strict";

(function () {
  var API = "/api/v1";
  var PAGE = 50;
  var state = {
    passwords: false, me: null, user: null, folder: "INBOX", folders: [],
    messages: [], total: 0, current: null, events: null, users: [], route: null,
    query: "", matched: [],
    // Whose folders and messages the mailbox view holds: not state.user,
    // which the compose view sets too without loading anything.
    listed: null
  };
  var SEEN = "\\Seen", FLAGGED = "\\Flagged", INBOX = "INBOX";

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        if (name === "text") node.textContent = attrs[name];
        else if (name === "className") node.className = attrs[name];
        else node.setAttribute(name, attrs[name]);
      });
    }
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function enc(s) { return encodeURIComponent(s); }

  function api(method, path, body) {
    var options = {
      method: method, credentials: "same-origin",
      headers: { "X-Simplemail": "1", "Accept": "application/json" }
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(API + path, options).then(function (response) {
      if (response.status === 204) return null;
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.error || ("error " + response.status));
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  var statusTimer = null;
  function say(text) {
    var status = $("status");
    status.textContent = text;
    status.hidden = false;
    clearTimeout(statusTimer);
    statusTimer = setTimeout(function () { status.hidden = true; }, 5000);
  }

  function failed(error) {
    if (error && error.status === 401) { location.hash = "#/login"; return; }
    say((error && error.message) || "Something went wrong.");
  }

  function humanSize(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(n < 10240 ? 1 : 0) + " kB";
    return (n / 1048576).toFixed(1) + " MB";
  }

  function shortDate(iso) {
    var d = new Date(iso);
    if (!iso || isNaN(d.getTime())) return "";
    var now = new Date();
    if (d.toDateString() === now.toDateString()) {
      return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    }
    var options = { month: "short", day: "numeric" };
    if (d.getFullYear() !== now.getFullYear()) options.year = "numeric";
    return d.toLocaleDateString([], options);
  }

  function longDate(iso) {
    var d = new Date(iso);
    return (!iso || isNaN(d.getTime())) ? "" : d.toLocaleString();
  }

  function show(view) {
    ["login-view", "users-view", "mailbox-view", "compose-view"].forEach(function (id) {
      $(id).hidden = id !== view;
    });
  }

  function mailboxPath(user) { return "/users/" + enc(user); }

  // The page's addresses: #/u/<user> is INBOX, #/u/<user>/f/<folder> another
  // folder, either followed by /m/<id> for one of its messages.
  function folderHash(user, folder) {
    return "#/u/" + enc(user) + (folder && folder !== INBOX ? "/f/" + enc(folder) : "");
  }

  function messageHash(user, folder, id) { return folderHash(user, folder) + "/m/" + enc(id); }

  function inFolder(folder) { return "?folder=" + enc(folder || INBOX); }

  function hasFlag(m, flag) { return (m.flags || []).indexOf(flag) !== -1; }

  // -- header

  function renderHeader() {
    $("who").textContent = state.user ? state.user : "";
    $("logout").hidden = !(state.passwords && state.me);
    var write = $("write-link");
    var writer = state.passwords ? state.me : state.user;
    write.hidden = !writer;
    if (writer) write.setAttribute("href", "#/u/" + enc(writer) + "/write");
  }

  // -- events (new mail without a reload)

  function listen(user) {
    if (state.events && state.events.user === user) return;
    stopListening();
    if (!window.EventSource) return;
    var source = new EventSource(API + mailboxPath(user) + "/events");
    source.user = user;
    var opened = false;
    source.addEventListener("open", function () {
      // After a reconnection (the server restarted), catch up on what
      // arrived meanwhile.
      if (opened && state.user === user) loadMailbox(user, 0).catch(failed);
      opened = true;
    });
    function on(kind, handle) {
      source.addEventListener(kind, function (event) {
        var data;
        try { data = JSON.parse(event.data); } catch (e) { return; }
        if (state.user !== user) return;
        handle(data);
        refreshFolders();
      });
    }
    on("message", function (summary) {
      if (state.query) {
        // Search results stay as they are; the new message is announced.
        say("New message from " + (summary.from || "unknown sender"));
        return;
      }
      if ((summary.folder || INBOX) !== state.folder) return;
      for (var i = 0; i < state.messages.length; i++) {
        if (state.messages[i].id === summary.id) return;
      }
      state.messages.unshift(summary);
      state.total += 1;
      var list = $("message-list");
      list.insertBefore(messageItem(summary, true), list.firstChild);
      $("empty").hidden = true;
      renderCount();
      if (state.folder === INBOX) {
        say("New message from " + (summary.from || "unknown sender") +
            (summary.subject ? ": " + summary.subject : ""));
      }
    });
    on("flags", function (summary) { updateSummary(summary); });
    on("expunge", function (gone) {
      if ((gone.folder || INBOX) === state.folder) removeFromList(gone.id);
    });
    on("folders", function () {});
    state.events = source;
  }

  function stopListening() {
    if (state.events) { state.events.close(); state.events = null; }
  }

  // -- users

  function showUsers() {
    state.user = null;
    stopListening();
    renderHeader();
    show("users-view");
    return api("GET", "/users").then(function (data) {
      state.users = data.users;
      var list = $("user-list");
      clear(list);
      data.users.forEach(function (user) {
        list.appendChild(el("li", null, [el("a", { href: "#/u/" + enc(user), text: user })]));
      });
      $("no-users").hidden = data.users.length > 0;
      $("add-user-form").hidden = state.passwords;
    }, failed);
  }

  // -- the folders

  var folderTimer = null;
  function refreshFolders() {
    clearTimeout(folderTimer);
    folderTimer = setTimeout(function () {
      if (state.user) loadFolders(state.user).catch(function () {});
    }, 150);
  }

  function loadFolders(user) {
    return api("GET", mailboxPath(user) + "/folders").then(function (data) {
      if (state.user !== user) return;
      state.folders = data.folders;
      renderFolders();
    });
  }

  function renderFolders() {
    var list = $("folder-list");
    clear(list);
    state.folders.forEach(function (f) {
      var link = el("a", { href: folderHash(state.user, f.name) }, [
        el("span", { className: "name", text: f.name === INBOX ? "Inbox" : f.name }),
        f.unseen ? el("span", { className: "unseen", text: String(f.unseen),
                                title: f.unseen + " unread" }) : null
      ]);
      var item = el("li", { "data-folder": f.name }, [link]);
      if (f.name === state.folder) item.className = "current";
      if (f.unseen) item.className += " has-unread";
      list.appendChild(item);
    });
  }

  function addFolder(event) {
    event.preventDefault();
    var name = $("new-folder").value;
    var user = state.user;
    api("POST", mailboxPath(user) + "/folders", { name: name }).then(function (data) {
      $("new-folder").value = "";
      say("Folder " + data.name + " made.");
      return loadFolders(user);
    }).catch(failed);
  }

  // -- the mailbox

  function renderCount() {
    $("mailbox-count").textContent = state.total + (state.query
      ? (state.total === 1 ? " match" : " matches")
      : (state.total === 1 ? " message" : " messages"));
    $("more").hidden = state.messages.length >= state.total;
  }

  function messageItem(m, isNew) {
    var link = el("a", { href: messageHash(state.user, state.folder, m.id) }, [
      el("span", { className: "from", text: m.from || "(no sender)" }),
      el("span", { className: "date", text: shortDate(m.date), title: longDate(m.date) }),
      el("span", { className: "subject", text: m.subject || "(no subject)" }),
      el("span", { className: "size", text: humanSize(m.size) }),
      highlighted("snippet", m.snippet || "")
    ]);
    var flagged = hasFlag(m, FLAGGED);
    link.insertBefore(el("span", {
      className: "star", text: flagged ? "\u2605" : "", title: flagged ? "flagged" : ""
    }), link.firstChild);
    if (state.query && m.folder) {
      link.appendChild(el("span", { className: "folder", text: m.folder }));
    }
    var item = el("li", { "data-id": m.id }, [link]);
    var classes = [];
    if (isNew) classes.push("new");
    if (!hasFlag(m, SEEN)) classes.push("unread");
    if (flagged) classes.push("flagged");
    if (m.id === state.current) classes.push("current");
    item.className = classes.join(" ");
    return item;
  }

  function listItem(id) {
    return $("message-list").querySelector('li[data-id="' + CSS.escape(id) + '"]');
  }

  // A message's flags changed (here or elsewhere): its line shows it.
  function updateSummary(summary) {
    for (var i = 0; i < state.messages.length; i++) {
      if (state.messages[i].id === summary.id) {
        if ((summary.folder || INBOX) !== state.folder) return;
        state.messages[i] = summary;
        var item = listItem(summary.id);
        if (item) {
          var fresh = messageItem(summary, item.classList.contains("new"));
          item.parentNode.replaceChild(fresh, item);
        }
      }
    }
    if (state.shown && state.shown.id === summary.id) {
      state.shown.flags = summary.flags;
      renderFlagTools();
    }
  }

  function removeFromList(id) {
    var before = state.messages.length;
    state.messages = state.messages.filter(function (m) { return m.id !== id; });
    if (state.messages.length !== before) state.total = Math.max(0, state.total - 1);
    var item = listItem(id);
    if (item) item.parentNode.removeChild(item);
    $("empty").hidden = state.messages.length > 0;
    renderCount();
  }

  // -- search: the words the server says it looked for (folded: no case,
  // no accents) are marked where a word of the text begins with one.

  function fold(s) {
    return s.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }

  function highlighted(className, text) {
    var node = el("span", { className: className });
    if (!state.query || !state.matched.length) {
      node.textContent = text;
      return node;
    }
    text.split(/([\p{L}\p{N}]+)/u).forEach(function (piece, i) {
      var word = fold(piece);
      var hit = i % 2 === 1 && state.matched.some(function (m) { return word.indexOf(m) === 0; });
      node.appendChild(hit ? el("mark", { text: piece }) : document.createTextNode(piece));
    });
    return node;
  }

  function search(event) {
    event.preventDefault();
    var before = state.query;
    state.query = $("search").value.trim();
    loadMailbox(state.user, 0).then(renderTitle, function (error) {
      state.query = before;  // a malformed query: the list stays as it was
      failed(error);
    });
  }

  function renderTitle() {
    $("mailbox-title").textContent = state.query ? "Search results" :
      (state.folder === INBOX ? "Inbox" : state.folder) + " of " + state.user;
  }

  function renderList() {
    var list = $("message-list");
    clear(list);
    state.messages.forEach(function (m) { list.appendChild(messageItem(m, false)); });
    $("empty").hidden = state.messages.length > 0;
    renderCount();
  }

  function loadMailbox(user, start) {
    var folder = state.folder;
    var query = state.query ? "&q=" + enc(state.query) : "";
    // With a query every folder is searched (MAILBOX.md): no folder given.
    var where = state.query ? "?start=" : inFolder(folder) + "&start=";
    return api("GET", mailboxPath(user) + "/messages" + where + start + "&limit=" + PAGE + query)
      .then(function (data) {
        if (state.user !== user || state.folder !== folder) return;
        state.matched = data.matched || [];
        if (start === 0) state.messages = data.messages;
        else state.messages = state.messages.concat(data.messages);
        state.total = data.total;
        renderList();
      });
  }

  function openMailbox(user, folder) {
    folder = folder || INBOX;
    var newUser = state.listed !== user;
    var fresh = newUser || state.user !== user || state.folder !== folder;
    state.user = user;
    state.folder = folder;
    renderHeader();
    show("mailbox-view");
    if (fresh) state.query = "";
    renderTitle();
    listen(user);
    if (fresh) {
      state.query = "";
      $("search").value = "";
      state.messages = [];
      state.current = null;
      if (newUser) state.folders = [];
      state.listed = user;
      renderFolders();
      loadFolders(user).catch(failed);
      return loadMailbox(user, 0);
    }
    return Promise.resolve();
  }

  function showMailbox(user, folder) {
    $("mailbox-view").classList.remove("reading");
    return openMailbox(user, folder).then(function () {
      state.shown = null;
      state.current = null;
      markCurrent();
      var view = $("message-view");
      clear(view);
      view.appendChild(el("p", { className: "muted placeholder", text: "Pick a message to read it." }));
    }, failed);
  }

  function markCurrent() {
    var items = $("message-list").children;
    for (var i = 0; i < items.length; i++) {
      items[i].classList.toggle("current", items[i].getAttribute("data-id") === state.current);
    }
  }

  // -- one message

  // Opening a message reads it: ?seen=1 marks it \Seen.
  function showMessage(user, folder, id) {
    return openMailbox(user, folder).then(function () {
      return api("GET", mailboxPath(user) + "/messages/" + enc(id) + inFolder(state.folder) +
                 "&seen=1");
    }).then(function (m) {
      state.current = id;
      renderMessage(user, m);
      updateSummary(m);
      markCurrent();
      var item = listItem(id);
      if (item) item.classList.remove("new");
      refreshFolders();
      $("mailbox-view").classList.add("reading");
    }, function (error) {
      if (error && error.status === 404) {
        say("That message is gone.");
        location.hash = folderHash(user, state.folder);
        return;
      }
      failed(error);
    });
  }

  // Read/unread, flag and Move for the message shown.
  function renderFlagTools() {
    var m = state.shown;
    if (!m) return;
    $("toggle-seen").textContent = hasFlag(m, SEEN) ? "Mark unread" : "Mark read";
    $("toggle-flag").textContent = hasFlag(m, FLAGGED) ? "Unflag" : "Flag";
    var select = $("move-to");
    clear(select);
    state.folders.forEach(function (f) {
      if (f.name !== state.folder) {
        select.appendChild(el("option", { value: f.name, text: f.name === INBOX ? "Inbox" : f.name }));
      }
    });
    $("move").disabled = !select.options.length;
  }

  function patchMessage(user, id, body) {
    return api("PATCH", mailboxPath(user) + "/messages/" + enc(id) + inFolder(state.folder), body);
  }

  function toggleFlag(user, flag, button) {
    var m = state.shown;
    var change = hasFlag(m, flag) ? { remove: [flag] } : { add: [flag] };
    button.disabled = true;
    patchMessage(user, m.id, { flags: change }).then(function (summary) {
      button.disabled = false;
      updateSummary(summary);
      refreshFolders();
    }, function (error) { button.disabled = false; failed(error); });
  }

  function moveMessage(user, button) {
    var m = state.shown;
    var target = $("move-to").value;
    if (!target) return;
    var from = state.folder;
    button.disabled = true;
    patchMessage(user, m.id, { folder: target }).then(function () {
      button.disabled = false;
      removeFromList(m.id);
      refreshFolders();
      say("Moved to " + (target === INBOX ? "Inbox" : target) + ".");
      location.hash = folderHash(user, from);
    }, function (error) { button.disabled = false; failed(error); });
  }

  function renderMessage(user, m) {
    var base = API + mailboxPath(user) + "/messages/" + enc(m.id);
    var where = inFolder(state.folder);
    state.shown = m;
    var view = $("message-view");
    clear(view);
    view.appendChild(el("a", { className: "button back", href: folderHash(user, state.folder),
                               text: "\u2190 " + (state.folder === INBOX ? "Inbox" : state.folder) }));
    view.appendChild(el("h2", { id: "message-subject", text: m.subject || "(no subject)" }));
    var meta = el("dl", { className: "meta" });
    [["From", m.from], ["To", m.to], ["Date", longDate(m.date)], ["Size", humanSize(m.size)]]
      .forEach(function (row) {
        if (!row[1]) return;
        meta.appendChild(el("dt", { text: row[0] }));
        meta.appendChild(el("dd", { text: row[1] }));
      });
    view.appendChild(meta);

    var remove = el("button", { type: "button", className: "button danger", id: "delete", text: "Delete" });
    remove.addEventListener("click", function () { deleteMessage(user, m.id, remove); });
    var seen = el("button", { type: "button", className: "button", id: "toggle-seen" });
    seen.addEventListener("click", function () { toggleFlag(user, SEEN, seen); });
    var flag = el("button", { type: "button", className: "button", id: "toggle-flag" });
    flag.addEventListener("click", function () { toggleFlag(user, FLAGGED, flag); });
    var move = el("button", { type: "button", className: "button", id: "move", text: "Move" });
    move.addEventListener("click", function () { moveMessage(user, move); });
    var tools = el("div", { className: "tools" }, [
      seen, flag, remove,
      el("a", { className: "button", href: base + "/raw" + where, download: m.id + ".eml", text: "Raw message" }),
      el("span", { className: "move" }, [
        el("label", { "for": "move-to", className: "muted", text: "to" }),
        el("select", { id: "move-to" }), move
      ])
    ]);
    view.appendChild(tools);
    renderFlagTools();

    if (m.html !== null && m.html !== undefined) {
      view.appendChild(el("p", { className: "section-title", text: "HTML" }));
      var frame = el("iframe", {
        className: "html-frame", sandbox: "", referrerpolicy: "no-referrer",
        title: "The message's HTML (no scripts, nothing loaded from elsewhere)",
        src: base + "/html" + where
      });
      view.appendChild(frame);
      view.appendChild(el("p", { className: "section-title", text: "Text" }));
    }
    view.appendChild(el("pre", { className: "text", id: "message-text", text: m.text || "" }));

    if (m.parts.length) {
      view.appendChild(el("p", { className: "section-title", text: "Attachments" }));
      var parts = el("ul", { className: "parts" });
      m.parts.forEach(function (p) {
        parts.appendChild(el("li", null, [
          el("a", { href: base + "/parts/" + p.part + where, download: p.filename, text: p.filename }),
          el("span", { className: "size", text: p.contentType + ", " + humanSize(p.size) })
        ]));
      });
      view.appendChild(parts);
    }

    var table = el("table");
    m.headers.forEach(function (h) {
      table.appendChild(el("tr", null, [el("td", { text: h[0] }), el("td", { text: h[1] })]));
    });
    view.appendChild(el("details", { className: "headers" }, [
      el("summary", { text: "All headers" }), table
    ]));
  }

  function deleteMessage(user, id, button) {
    button.disabled = true;
    api("DELETE", mailboxPath(user) + "/messages/" + enc(id) + inFolder(state.folder)).then(function () {
      removeFromList(id);
      refreshFolders();
      say("Message deleted.");
      location.hash = folderHash(user, state.folder);
    }, function (error) { button.disabled = false; failed(error); });
  }

  // -- writing

  function showCompose(user) {
    state.user = user;
    renderHeader();
    show("compose-view");
    $("compose-error").hidden = true;
    $("compose-from").textContent = "From " + user;
    $("compose-cancel").setAttribute("href", "#/u/" + enc(user));
    return api("GET", "/users").then(function (data) {
      var to = $("compose-to");
      var chosen = to.value;
      clear(to);
      data.users.forEach(function (u) { to.appendChild(el("option", { value: u, text: u })); });
      if (chosen && data.users.indexOf(chosen) !== -1) to.value = chosen;
    }, failed);
  }

  function send(event) {
    event.preventDefault();
    var user = state.user;
    var to = $("compose-to").value;
    var button = $("compose-send");
    button.disabled = true;
    api("POST", "/users/" + enc(to) + "/messages", {
      from: user, subject: $("compose-subject").value, text: $("compose-text").value,
      keepCopy: true
    }).then(function () {
      button.disabled = false;
      $("compose-subject").value = "";
      $("compose-text").value = "";
      say("Message sent to " + to + ".");
      location.hash = "#/u/" + enc(user);
    }, function (error) {
      button.disabled = false;
      var box = $("compose-error");
      box.textContent = error.message;
      box.hidden = false;
      if (error.status === 401) failed(error);
    });
  }

  // -- logging in and out

  function showLogin() {
    stopListening();
    state.user = null;
    renderHeader();
    show("login-view");
    $("login-user").focus();
  }

  function login(event) {
    event.preventDefault();
    var box = $("login-error");
    box.hidden = true;
    api("POST", "/login", { user: $("login-user").value, password: $("login-password").value })
      .then(function (data) {
        state.me = data.user;
        $("login-password").value = "";
        location.hash = "#/u/" + enc(data.user);
      }, function (error) {
        box.textContent = error.status === 401 ? "Login failed." : error.message;
        box.hidden = false;
      });
  }

  function logout() {
    api("POST", "/logout").then(function () {
      state.me = null;
      state.user = null;
      state.messages = [];
      location.hash = "#/login";
    }, failed);
  }

  function addUser(event) {
    event.preventDefault();
    var name = $("new-user").value;
    api("POST", "/users", { user: name }).then(function () {
      $("new-user").value = "";
      say("User " + name + " added.");
      showUsers();
    }, failed);
  }

  // -- routes: #/ (users), #/login, #/u/<user>[/f/<folder>][/m/<id>], #/u/<user>/write

  function route() {
    var hash = location.hash.replace(/^#/, "") || "/";
    var parts = hash.split("/").slice(1).map(function (p) {
      try { return decodeURIComponent(p); } catch (e) { return ""; }
    });
    if (state.passwords && !state.me && parts[0] !== "login") {
      location.hash = "#/login";
      return;
    }
    if (parts[0] === "login") {
      if (!state.passwords || state.me) { location.hash = "#/"; return; }
      showLogin();
    } else if (parts[0] === "u" && parts[1]) {
      if (state.passwords && parts[1] !== state.me) {
        location.hash = "#/u/" + enc(state.me);
        return;
      }
      var folder = INBOX, rest = parts.slice(2);
      if (rest[0] === "f" && rest[1]) { folder = rest[1]; rest = rest.slice(2); }
      if (rest[0] === "m" && rest[1]) showMessage(parts[1], folder, rest[1]);
      else if (rest[0] === "write") showCompose(parts[1]);
      else showMailbox(parts[1], folder);
    } else if (state.passwords) {
      location.hash = "#/u/" + enc(state.me);
    } else {
      showUsers();
    }
  }

  function start() {
    $("login-form").addEventListener("submit", login);
    $("compose-form").addEventListener("submit", send);
    $("add-user-form").addEventListener("submit", addUser);
    $("new-folder-form").addEventListener("submit", addFolder);
    $("search-form").addEventListener("submit", search);
    $("logout").addEventListener("click", logout);
    $("more").addEventListener("click", function () {
      loadMailbox(state.user, state.messages.length).catch(failed);
    });
    window.addEventListener("hashchange", route);
    api("GET", "/session").then(function (session) {
      state.passwords = session.passwords;
      state.me = session.user;
      route();
    }, failed);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
