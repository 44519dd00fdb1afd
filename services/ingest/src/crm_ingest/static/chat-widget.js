/*
 * CRM web chat widget: one self-contained script, no dependencies, no build step.
 *
 *   <script src="https://<ingest host>/chat/widget.js" data-widget="<widget key>" async></script>
 *
 * Optional attributes: data-api (the ingest base URL; default: where this script came from),
 * data-title, data-transport="poll" (skip the WebSocket and use the long-poll fallback),
 * data-open="true" (open the panel at once), and for a person logged in on the site (identity
 * verification) data-email with data-email-signature, the signature the site's backend made of
 * that email with the widget's identity secret: the visitor then joins the person's contact.
 *
 * A page whose identity differs from the one the stored conversation was for (another person
 * logged in, or nobody any more) starts a new conversation: nothing of the other one is shown
 * or sent again. A signature ingest refuses is reported in the console, and the chat goes on
 * as an anonymous visitor.
 *
 * The visitor token and the last seq seen are kept in localStorage, with the messages not yet
 * acknowledged, so that a reload or a lost connection resumes the conversation and resends
 * what the server has not confirmed (with the same client id: never twice). All text is put
 * into the page with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || !script.getAttribute("data-widget")) {
    if (window.console) console.warn("crm chat: the script tag needs data-widget");
    return;
  }
  var WIDGET = script.getAttribute("data-widget");
  var API = (script.getAttribute("data-api") || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  var BASE = API + "/v1/chat/" + encodeURIComponent(WIDGET);
  var TITLE = script.getAttribute("data-title") || "Chat with us";
  var FORCE_POLL = script.getAttribute("data-transport") === "poll";
  var STORE_KEY = "crm-chat:" + API + ":" + WIDGET;
  // Who the site says is logged in, with the site's signature; null for an anonymous visitor.
  var identity = script.getAttribute("data-email") && script.getAttribute("data-email-signature") ? {
    email: script.getAttribute("data-email").trim(),
    signature: script.getAttribute("data-email-signature").trim()
  } : null;
  var TYPING_SHOWN_MS = 6000;
  var TYPING_SENT_EVERY_MS = 3000;

  // --- what survives a reload ---------------------------------------------------------------

  function load() {
    try {
      var saved = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
      return saved && typeof saved === "object" ? saved : {};
    } catch (e) {
      return {};
    }
  }

  function identityKey() {
    return identity ? identity.email.toLowerCase() : "";
  }

  var saved = load();
  if ((typeof saved.identity === "string" ? saved.identity : "") !== identityKey()) {
    saved = {}; // the stored conversation was someone else's (or an anonymous one)
  }
  var state = {
    token: typeof saved.token === "string" ? saved.token : "",
    sessionId: typeof saved.sessionId === "string" ? saved.sessionId : "",
    lastSeq: 0, // the highest seq shown in this page; a new page reads the transcript from 0
    lastSeen: Number(saved.lastSeen) || 0, // the highest seq the visitor has had in front of them
    outbox: Array.isArray(saved.outbox) ? saved.outbox.filter(function (m) {
      return m && typeof m.client_id === "string" && typeof m.text === "string";
    }) : [],
    maxBytes: 4096,
    name: typeof saved.name === "string" ? saved.name : "",
    email: typeof saved.email === "string" ? saved.email : ""
  };

  function save() {
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify({
        token: state.token, sessionId: state.sessionId, lastSeq: state.lastSeq, lastSeen: state.lastSeen,
        outbox: state.outbox, name: state.name, email: state.email, identity: identityKey()
      }));
    } catch (e) { /* storage full or disabled: the chat still works for this page */ }
  }

  // --- the panel ----------------------------------------------------------------------------

  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:14px}",
    ".crm-chat-open{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;",
    "background:#2457d6;color:#fff;font-size:24px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000}",
    ".crm-chat-badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;border-radius:10px;",
    "background:#d62446;color:#fff;font-size:12px;line-height:20px;padding:0 5px}",
    ".crm-chat-panel{position:fixed;right:20px;bottom:88px;width:340px;max-width:calc(100vw - 40px);height:460px;",
    "max-height:calc(100vh - 110px);display:flex;flex-direction:column;background:#fff;color:#1b1f24;",
    "border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);overflow:hidden;z-index:2147483000}",
    ".crm-chat-panel[hidden],[hidden]{display:none!important}",
    "header{display:flex;align-items:center;justify-content:space-between;padding:12px 14px;background:#2457d6;color:#fff}",
    "header strong{font-size:15px}",
    ".crm-chat-close{background:none;border:0;color:#fff;font-size:20px;cursor:pointer}",
    ".crm-chat-log{flex:1;overflow-y:auto;margin:0;padding:12px;list-style:none;background:#f5f7fb}",
    ".crm-chat-message{max-width:80%;margin:6px 0;padding:8px 11px;border-radius:12px;white-space:pre-wrap;",
    "overflow-wrap:anywhere;line-height:1.35}",
    ".crm-chat-inbound{margin-left:auto;background:#2457d6;color:#fff;border-bottom-right-radius:3px}",
    ".crm-chat-outbound{margin-right:auto;background:#fff;border:1px solid #dde3ee;border-bottom-left-radius:3px}",
    ".crm-chat-pending{opacity:.6}",
    ".crm-chat-meta{display:block;font-size:11px;opacity:.75;margin-top:3px}",
    ".crm-chat-inbound[data-read] .crm-chat-meta::after{content:' \\00B7  seen'}",
    ".crm-chat-typing{padding:4px 14px;font-size:12px;color:#5b6472;background:#f5f7fb}",
    ".crm-chat-about{padding:6px 12px;border-top:1px solid #e6e9f0;display:flex;gap:6px}",
    ".crm-chat-about input{flex:1;min-width:0;padding:5px 7px;border:1px solid #cfd6e3;border-radius:6px;font-size:12px}",
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e6e9f0}",
    "textarea{flex:1;resize:none;padding:8px;border:1px solid #cfd6e3;border-radius:8px;height:42px}",
    "form button{border:0;border-radius:8px;padding:0 14px;background:#2457d6;color:#fff;cursor:pointer}",
    ".crm-chat-status{padding:0 12px 8px;font-size:12px;color:#a33}"
  ].join("");

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  var host = el("div");
  host.setAttribute("data-crm-chat", WIDGET);
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var style = el("style");
  style.textContent = CSS;
  root.appendChild(style);

  var openButton = el("button", "crm-chat-open", "\uD83D\uDCAC");
  openButton.type = "button";
  openButton.setAttribute("aria-label", TITLE);
  var badge = el("span", "crm-chat-badge");
  badge.hidden = true;
  openButton.appendChild(badge);

  var panel = el("section", "crm-chat-panel");
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", TITLE);
  panel.hidden = true;
  var header = el("header");
  header.appendChild(el("strong", "", TITLE));
  var closeButton = el("button", "crm-chat-close", "\u00D7");
  closeButton.type = "button";
  closeButton.setAttribute("aria-label", "Close");
  header.appendChild(closeButton);
  var log = el("ol", "crm-chat-log");
  log.setAttribute("aria-live", "polite");
  var typing = el("div", "crm-chat-typing", "Typing\u2026");
  typing.hidden = true;
  var about = el("div", "crm-chat-about");
  var nameInput = el("input", "crm-chat-name");
  nameInput.placeholder = "Your name (optional)";
  nameInput.maxLength = 200;
  nameInput.value = state.name;
  var emailInput = el("input", "crm-chat-email");
  emailInput.type = "email";
  emailInput.placeholder = "Email (optional)";
  emailInput.maxLength = 254;
  emailInput.value = state.email;
  emailInput.hidden = identity !== null; // the site told who it is
  about.appendChild(nameInput);
  about.appendChild(emailInput);
  var form = el("form", "crm-chat-compose");
  var input = el("textarea", "crm-chat-input");
  input.placeholder = "Write a message\u2026";
  input.setAttribute("aria-label", "Message");
  var sendButton = el("button", "crm-chat-send", "Send");
  sendButton.type = "submit";
  form.appendChild(input);
  form.appendChild(sendButton);
  var status = el("div", "crm-chat-status");
  [header, log, typing, about, form, status].forEach(function (n) { panel.appendChild(n); });
  root.appendChild(openButton);
  root.appendChild(panel);

  // --- the transcript in the page -----------------------------------------------------------

  var shown = {}; // seq -> element
  var pending = {}; // client_id -> element not yet stored
  var typingTimer = null;

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  function bubble(direction, text, meta) {
    var item = el("li", "crm-chat-message crm-chat-" + direction);
    item.appendChild(el("span", "crm-chat-text", text));
    item.appendChild(el("span", "crm-chat-meta", meta || ""));
    return item;
  }

  function timeOf(at) {
    var date = new Date(at);
    return isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function place(item, seq) {
    // Keep seq order; messages not yet stored stay below every stored one.
    item.setAttribute("data-seq", String(seq));
    var next = null;
    for (var i = 0; i < log.children.length; i++) {
      var child = log.children[i];
      var other = Number(child.getAttribute("data-seq") || Infinity);
      if (other > seq) { next = child; break; }
    }
    log.insertBefore(item, next);
  }

  function showMessage(frame) {
    if (typeof frame.seq !== "number" || shown[frame.seq]) return;
    var item = frame.client_id && pending[frame.client_id];
    if (item) {
      delete pending[frame.client_id];
    } else {
      item = bubble(frame.direction === "outbound" ? "outbound" : "inbound", String(frame.text || ""));
    }
    if (frame.client_id && inOutbox(frame.client_id)) {
      item.classList.add("crm-chat-pending"); // stored, not yet confirmed: it is sent again
      item.setAttribute("data-client-id", frame.client_id);
    }
    item.querySelector(".crm-chat-meta").textContent = timeOf(frame.at);
    shown[frame.seq] = item;
    place(item, frame.seq);
    state.lastSeq = Math.max(state.lastSeq, frame.seq);
    if (frame.direction === "outbound") {
      typing.hidden = true;
      if (panel.hidden) {
        var unread = 0;
        Object.keys(shown).forEach(function (seq) {
          if (Number(seq) > state.lastSeen && shown[seq].classList.contains("crm-chat-outbound")) unread++;
        });
        badge.textContent = String(unread);
        badge.hidden = unread === 0;
      }
    }
    if (!panel.hidden) seen();
    save();
    scrollDown();
  }

  function confirmed(clientId, seq) {
    state.outbox = state.outbox.filter(function (m) { return m.client_id !== clientId; });
    save();
    var item = pending[clientId] || shown[seq];
    if (!item) return;
    item.classList.remove("crm-chat-pending");
    if (seq < 0) item.querySelector(".crm-chat-meta").textContent = "Not sent";
  }

  function inOutbox(clientId) {
    return state.outbox.some(function (m) { return m.client_id === clientId; });
  }

  function showTyping() {
    typing.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { typing.hidden = true; }, TYPING_SHOWN_MS);
  }

  function showRead(seq) {
    Object.keys(shown).forEach(function (s) {
      var item = shown[s];
      if (Number(s) <= seq && item.classList.contains("crm-chat-inbound")) item.setAttribute("data-read", "true");
    });
  }

  function setStatus(text) {
    status.textContent = text || "";
  }

  function onFrame(frame) {
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "message") showMessage(frame);
    else if (frame.type === "ack") confirmed(frame.client_id, frame.seq);
    else if (frame.type === "typing" && frame.from === "agent") showTyping();
    else if (frame.type === "read" && frame.from === "agent") showRead(frame.seq);
    else if (frame.type === "error") onError(frame);
  }

  // --- talking to ingest ----------------------------------------------------------------------

  var transport = FORCE_POLL ? "poll" : "ws"; // "poll" once the socket cannot be opened
  var socket = null;
  var attempts = 0;
  var failedOpens = 0;
  var retryAfter = 0;
  var started = false;
  var lastTypingSent = 0;
  var lastReadSent = 0;

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function backoff() {
    attempts++;
    var wait = Math.min(30000, 500 * Math.pow(2, Math.min(attempts, 6)));
    if (retryAfter) {
      wait = Math.max(wait, retryAfter * 1000);
      retryAfter = 0;
    }
    return wait / 2 + Math.random() * wait / 2;
  }

  function authHeaders() {
    return { "Authorization": "Bearer " + state.token, "Content-Type": "application/json" };
  }

  function retryAfterOf(response) {
    return Number(response.headers.get("Retry-After")) || 0;
  }

  async function openSession(reuse) {
    var body = { name: state.name, email: state.email };
    if (identity) {
      body.email = identity.email;
      body.email_signature = identity.signature;
    }
    if (reuse && state.token) body.token = state.token;
    var response = await fetch(BASE + "/sessions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
    });
    if (response.status === 429) {
      retryAfter = retryAfterOf(response);
      throw new Error("rate limited");
    }
    if (identity && (response.status === 401 || response.status === 422)) {
      // The site's email or signature was refused: the same person goes on as an anonymous
      // visitor (in a new session: a verified one resumes only with its signature).
      if (window.console) console.warn("crm chat: ingest refused data-email / data-email-signature (" +
        response.status + "); chatting as an anonymous visitor");
      identity = null;
      emailInput.hidden = false;
      save();
      return openSession(false);
    }
    if (response.status === 422 && (state.name || state.email)) {
      // What the visitor typed about themselves was refused: go on without it.
      state.name = state.email = "";
      save();
      return openSession(reuse);
    }
    if (!response.ok) throw new Error("session " + response.status);
    var session = await response.json();
    if (session.session_id !== state.sessionId) {
      // Another conversation: nothing shown or seen belongs to it.
      state.lastSeq = 0;
      state.lastSeen = 0;
      shown = {};
      Array.prototype.slice.call(log.querySelectorAll("[data-seq]")).forEach(function (n) {
        log.removeChild(n);
      });
    }
    state.token = session.token;
    state.sessionId = session.session_id;
    state.maxBytes = session.max_message_bytes || state.maxBytes;
    save();
  }

  async function start() {
    if (started) return;
    started = true;
    for (;;) {
      try {
        await openSession(true);
        break;
      } catch (e) {
        setStatus("Connecting\u2026");
        await sleep(backoff());
      }
    }
    attempts = 0;
    setStatus("");
    if (transport === "ws") connect();
    else poll();
  }

  function connect() {
    var url = BASE.replace(/^http/, "ws") + "/ws?token=" + encodeURIComponent(state.token) +
      "&after=" + state.lastSeq;
    var opened = false;
    try {
      socket = new WebSocket(url);
    } catch (e) {
      transport = "poll";
      poll();
      return;
    }
    socket.onopen = function () {
      opened = true;
      attempts = 0;
      failedOpens = 0;
      setStatus("");
      state.outbox.forEach(sendFrame);
    };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      onFrame(frame);
    };
    socket.onclose = function (event) {
      socket = null;
      if (event.code === 1009) {
        // Over the size limit: that message can never be sent; drop it rather than loop.
        state.outbox = state.outbox.filter(function (m) {
          return new TextEncoder().encode(m.text).length <= state.maxBytes;
        });
        save();
      }
      if (!opened && ++failedOpens >= 3) {
        transport = "poll"; // a proxy or a firewall does not let the socket through
        poll();
        return;
      }
      reconnect(event.code);
    };
  }

  async function reconnect(code) {
    if (code === 4401 || code === 4404) {
      try { await openSession(false); } catch (e) { /* tried again below */ }
    } else if (code === 4429 && !retryAfter) {
      retryAfter = 10;
    }
    setStatus(attempts > 1 ? "Reconnecting\u2026" : "");
    await sleep(backoff());
    if (transport === "ws") connect();
  }

  function sendFrame(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "message", client_id: message.client_id, text: message.text }));
    }
  }

  function onError(frame) {
    if (frame.retry_after) retryAfter = Number(frame.retry_after) || 0;
    if (frame.code === "unavailable" && frame.client_id) {
      // Stored but not yet taken further: the same client id again, a little later.
      setTimeout(function () {
        state.outbox.filter(function (m) { return m.client_id === frame.client_id; }).forEach(sendFrame);
      }, (Number(frame.retry_after) || 2) * 1000);
    } else if (frame.code === "too_large" || frame.code === "invalid") {
      setStatus(frame.detail || "That message was not accepted.");
    }
  }

  async function poll() {
    flushOverRest();
    for (;;) {
      try {
        var response = await fetch(BASE + "/messages?after=" + state.lastSeq + "&wait=25",
          { headers: authHeaders(), cache: "no-store" });
        if (response.status === 401) {
          await openSession(false);
          continue;
        }
        if (response.status === 429) retryAfter = retryAfterOf(response);
        if (!response.ok) throw new Error("poll " + response.status);
        var body = await response.json();
        (body.messages || []).forEach(onFrame);
        (body.events || []).forEach(onFrame);
        attempts = 0;
        setStatus("");
      } catch (e) {
        setStatus(attempts > 1 ? "Reconnecting\u2026" : "");
        await sleep(backoff());
      }
    }
  }

  var flushing = false;

  async function flushOverRest() {
    if (flushing) return;
    flushing = true;
    try {
      while (state.outbox.length) {
        var message = state.outbox[0];
        var response;
        try {
          response = await fetch(BASE + "/messages", {
            method: "POST", headers: authHeaders(),
            body: JSON.stringify({ client_id: message.client_id, text: message.text })
          });
        } catch (e) {
          await sleep(backoff());
          continue;
        }
        if (response.ok) {
          var ack = await response.json();
          confirmed(ack.client_id, ack.seq);
        } else if (response.status === 401) {
          try { await openSession(false); } catch (e) { await sleep(backoff()); }
        } else if (response.status === 413 || response.status === 422) {
          setStatus("That message was not accepted.");
          confirmed(message.client_id, -1);
        } else {
          retryAfter = retryAfterOf(response);
          await sleep(backoff());
        }
      }
    } finally {
      flushing = false;
    }
  }

  function clientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function send(text) {
    if (new TextEncoder().encode(text).length > state.maxBytes) {
      setStatus("That message is too long.");
      return false;
    }
    var message = { client_id: clientId(), text: text };
    state.outbox.push(message);
    save();
    showPending(message);
    if (transport === "ws") sendFrame(message);
    else flushOverRest();
    return true;
  }

  function showPending(message) {
    var item = bubble("inbound", message.text, "Sending\u2026");
    item.classList.add("crm-chat-pending");
    item.setAttribute("data-client-id", message.client_id);
    pending[message.client_id] = item;
    log.appendChild(item);
    scrollDown();
  }

  function notify(frame) {
    if (transport === "ws") {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
    } else if (state.token) {
      fetch(BASE + "/events", { method: "POST", headers: authHeaders(), body: JSON.stringify(frame) })
        .catch(function () { /* a lost notice is fine */ });
    }
  }

  function seen() {
    state.lastSeen = Math.max(state.lastSeen, state.lastSeq);
    badge.hidden = true;
    if (state.lastSeq > lastReadSent && document.visibilityState !== "hidden") {
      lastReadSent = state.lastSeq;
      notify({ type: "read", seq: state.lastSeq });
    }
  }

  // --- the visitor's actions ------------------------------------------------------------------

  function open() {
    panel.hidden = false;
    openButton.setAttribute("aria-expanded", "true");
    start();
    seen();
    input.focus();
  }

  openButton.addEventListener("click", function () {
    if (panel.hidden) open();
    else panel.hidden = true;
  });
  closeButton.addEventListener("click", function () { panel.hidden = true; });

  function aboutChanged() {
    var name = nameInput.value.trim();
    var email = emailInput.value.trim();
    if (name === state.name && email === state.email) return;
    if (email && !emailInput.checkValidity()) return;
    state.name = name;
    state.email = email;
    save();
    if (state.token) openSession(true).catch(function () { /* sent with the next session call */ });
  }
  nameInput.addEventListener("change", aboutChanged);
  emailInput.addEventListener("change", aboutChanged);

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (text && send(text)) input.value = "";
    input.focus();
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit"));
    }
  });
  input.addEventListener("input", function () {
    var now = Date.now();
    if (now - lastTypingSent > TYPING_SENT_EVERY_MS) {
      lastTypingSent = now;
      notify({ type: "typing" });
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!panel.hidden) seen();
  });

  function mount() {
    document.body.appendChild(host);
    state.outbox.forEach(showPending); // left from an earlier page: sent again once connected
    // A returning visitor reconnects at once, so that replies show (and count) while closed.
    if (script.getAttribute("data-open") === "true") open();
    else if (state.token) start();
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
