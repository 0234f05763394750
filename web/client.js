// rtgate browser client: one API whichever transport carries it. It races
// WebTransport (HTTP/3: a bidirectional stream of length-prefixed JSON
// frames, datagrams for volatile messages) against WebSocket, prefers
// WebTransport when both connect, and remembers per origin when
// WebTransport fails, so nobody waits for a UDP timeout. Login, heartbeats,
// acks, automatic reconnect with backoff and resume from the last seen
// positions (so nothing stored is missed across a reconnect).
//
//   const c = new RtgateClient({ url: location.origin, userId: "alice" });
//   c.on("message", m => ...); c.on("state", s => ...);
//   await c.connect(); await c.join("lobby"); await c.sendToRoom("lobby", {text: "hi"});
"use strict";

class RtgateClient {
  /**
   * @param {object} opts
   * @param {string} [opts.url]    server base URL (http[s]://host:port); default: this page's origin
   * @param {string} opts.userId   dev-mode identity (ignored by the server when a token is given)
   * @param {string} [opts.token]  JWT, when the server requires one
   * @param {() => Promise<string>} [opts.getToken] fetches a fresh JWT: called before every
   *   (re)connect, when the server says the token expires soon (msgType 10), and after a 4401
   *   close (the client then reconnects instead of giving up)
   * @param {string[]} [opts.rooms] rooms to join at every login
   * @param {string} [opts.transport] "auto" (default: WebTransport, then WebSocket), "webtransport" or "websocket"
   * @param {string} [opts.wtUrl]  WebTransport URL; default: the one `/cert-hash` names
   * @param {number} [opts.wtTimeoutMs] how long a WebTransport attempt may take (default 3000)
   * @param {number} [opts.wtGraceMs] how long "auto" waits for WebTransport once the WebSocket is up
   *   (default 250; 4x when WebTransport worked here before)
   * @param {number} [opts.wtMemoryMs] how long this origin remembers which transport won (default 10 min)
   */
  constructor(opts) {
    this.opts = Object.assign(
      { url: location.origin, rooms: [], transport: "auto", wtTimeoutMs: 3000, wtGraceMs: 250, wtMemoryMs: 600000 },
      opts);
    this.state = "idle";
    this.transport = null;
    this.listeners = {};
    this.pending = new Map(); // clientMsgId -> {resolve, reject}
    this.waiters = []; // replies awaited by msgType
    this.rooms = new Set(this.opts.rooms);
    this.inboxSeq = null; // last inbox seq seen; null until the first login
    this.roomSeqs = {}; // room -> last seq seen
    this.seen = new Set(); // msgIds already delivered to the page
    this.latestSeen = new Map(); // sender|room|user|key -> newest msgId of a "latest" update
    this.backoffMs = 500;
    this.closedByUser = false;
    this.hbTimer = null;
    this.lastInbound = 0;
    this.refreshing = false; // a msgType 10 refresh is in flight
    this.authFailures = 0; // 4401 closes since the last good login
  }

  on(event, fn) {
    (this.listeners[event] = this.listeners[event] || []).push(fn);
    return this;
  }

  emit(event, arg) {
    for (const fn of this.listeners[event] || []) {
      try { fn(arg); } catch (e) { console.error(e); }
    }
  }

  setState(state, detail) {
    this.state = state;
    this.emit("state", { state, detail, transport: this.transport });
  }

  /** Connects and logs in; resolves with the login reply. Reconnects on its own afterwards. */
  connect() {
    this.closedByUser = false;
    return new Promise((resolve, reject) => {
      this.onFirstLogin = { resolve, reject };
      this.open();
    });
  }

  /** Closes for good (no reconnect). */
  close() {
    this.closedByUser = true;
    clearInterval(this.hbTimer);
    if (this.link) this.link.close(1000, "bye");
    this.setState("closed");
  }

  wsUrl() {
    const u = new URL(this.opts.url);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.pathname = "/ws";
    if (this.opts.token) u.searchParams.set("token", this.opts.token);
    return u.toString();
  }

  /** A fresh token from the page's callback, when it gave one. */
  async freshToken() {
    if (!this.opts.getToken) return;
    try { this.opts.token = await this.opts.getToken(); } catch (e) { this.emit("error", { code: 0, reason: `getToken: ${e}` }); }
  }

  /** Answers the server's "credentials expire soon" with new ones (msgType 10). */
  async refresh() {
    if (this.refreshing || !this.opts.getToken || !this.link || !this.link.open) return;
    this.refreshing = true;
    await this.freshToken();
    if (this.link && this.link.open) this.link.send(JSON.stringify({ msgType: 10, token: this.opts.token }));
  }

  async open() {
    this.setState("connecting");
    await this.freshToken();
    const link = await this.openLink();
    if (!link || !link.open) return; // closed meanwhile; onClose decides what next
    this.link = link;
    this.lastErrorCode = null;
    this.transport = link.kind;
    this.lastInbound = Date.now();
    this.setState("logging-in");
    const login = { msgType: 2, sendUserId: this.opts.userId, rooms: [...this.rooms] };
    if (this.opts.token) login.token = this.opts.token;
    // Resume: replay what arrived while we were away.
    if (this.inboxSeq !== null) {
      login.since = { inbox: this.inboxSeq, rooms: Object.assign({}, this.roomSeqs) };
    }
    link.send(JSON.stringify(login));
  }

  /**
   * The link for this connection. "auto" races WebTransport against
   * WebSocket: WebTransport wins if it is ready first, or within
   * `wtGraceMs` of the WebSocket; otherwise the WebSocket is used at once
   * and the WebTransport attempt is dropped. A WebTransport failure is
   * remembered for this origin (`wtMemoryMs`), so a returning user on a
   * network that blocks UDP goes straight to WebSocket.
   */
  async openLink() {
    const mode = this.opts.transport;
    const canWt = mode !== "websocket" && typeof WebTransport !== "undefined";
    if (!canWt) return this.choose(await this.openWs());
    if (mode === "webtransport") {
      try {
        return this.choose(await WtLink.open(this.opts, this.opts.wtTimeoutMs, this.handlers()));
      } catch (e) {
        this.emit("fallback", String((e && e.message) || e));
        this.onClose(0, String(e));
        return null;
      }
    }
    const memory = TransportMemory.get(this.opts.url);
    if (memory === "websocket") {
      this.emit("fallback", "it failed here recently");
      return this.choose(await this.openWs());
    }
    const wtP = WtLink.open(this.opts, this.opts.wtTimeoutMs, this.handlers()).then(
      (link) => { TransportMemory.set(this.opts.url, "webtransport", this.opts.wtMemoryMs); return link; },
      (e) => {
        TransportMemory.set(this.opts.url, "websocket", this.opts.wtMemoryMs);
        this.emit("fallback", String((e && e.message) || e));
        return null;
      });
    const wsP = this.openWs();
    // WebTransport, unless the WebSocket is up and the grace has passed
    // (undefined); a failed WebSocket leaves it to WebTransport.
    const grace = memory === "webtransport" ? 4 * this.opts.wtGraceMs : this.opts.wtGraceMs;
    const wt = await Promise.race([
      wtP,
      wsP.then((ws) => (ws ? new Promise((r) => setTimeout(() => r(undefined), grace)) : wtP)),
    ]);
    if (wt) {
      wsP.then((ws) => ws && ws.close(1000, "webtransport preferred"));
      return this.choose(wt);
    }
    wtP.then((late) => late && late.close(1000, "websocket chosen"));
    const ws = await wsP;
    if (!ws) { this.onClose(1006, "no transport connected"); return null; }
    return this.choose(ws);
  }

  /** A WebSocket link, or null when it did not open. */
  async openWs() {
    const link = await WsLink.open(this.opts, this.handlers());
    return link.open ? link : null;
  }

  /**
   * Handlers for one link: its frames and its close reach the client only
   * once it is the chosen link (a raced loser closes silently).
   */
  handlers() {
    const h = { link: null };
    h.onmessage = (text) => { if (this.link === h.link) this.onFrame(text); };
    h.onclose = (code, reason) => { if (this.link === h.link) this.onClose(code, reason); };
    return h;
  }

  choose(link) {
    if (!link) { this.onClose(1006, "no transport connected"); return null; }
    if (this.closedByUser) { link.close(1000, "bye"); return null; }
    this.link = link;
    return link;
  }

  onClose(code, reason) {
    clearInterval(this.hbTimer);
    for (const [, p] of this.pending) p.reject(new Error(`connection closed (${code})`));
    this.pending.clear();
    if (this.closedByUser) return;
    // 4401 with a token source: the token expired or was revoked; fetch a
    // fresh one and come back (twice in a row means it is not the token's age).
    if (code === 4401 && this.opts.getToken && this.authFailures < 2) {
      this.authFailures += 1;
      this.setState("reconnecting", "credentials expired; fetching a fresh token");
      setTimeout(() => this.open(), 100 + Math.random() * 400);
      return;
    }
    // 4401/4403: credentials are wrong, retrying cannot help.
    if (code === 4401 || code === 4403) {
      this.setState("refused", `${code} ${reason}`);
      if (this.onFirstLogin) this.onFirstLogin.reject(new Error(`login refused: ${code} ${reason}`));
      return;
    }
    const delay = Math.min(this.backoffMs, 15000) * (0.5 + Math.random());
    this.backoffMs = Math.min(this.backoffMs * 2, 15000);
    // A login refused over WebTransport arrives as error 401/403 before the close.
    if (this.state === "logging-in" && (this.lastErrorCode === 401 || this.lastErrorCode === 403)) {
      this.setState("refused", `${this.lastErrorCode}`);
      if (this.onFirstLogin) this.onFirstLogin.reject(new Error(`login refused: ${this.lastErrorCode}`));
      return;
    }
    this.setState("reconnecting", `closed ${code}${reason ? " " + reason : ""}; retry in ${Math.round(delay)} ms`);
    setTimeout(() => this.open(), delay);
  }

  onFrame(data) {
    this.lastInbound = Date.now();
    if (data === "pong") return;
    let m;
    try { m = JSON.parse(data); } catch (e) { return; }
    switch (m.msgType) {
      case 1: return;
      case 2: return this.onLogin(m);
      case 4: return this.settle(m.clientMsgId, m, null);
      case 9:
        this.lastErrorCode = m.code;
        if (m.clientMsgId && this.pending.has(m.clientMsgId)) return this.settle(m.clientMsgId, null, m);
        this.emit("error", m);
        return this.wake(9, m);
      case 10:
        // Either the server's notice that the token expires at m.exp, or
        // the answer to our refresh with the new expiry.
        if (this.refreshing) { this.refreshing = false; return this.emit("refreshed", m); }
        this.emit("expiring", m);
        return this.refresh();
      case 5: case 6: case 7: case 8:
        if (m.msgType === 5 && m.roomId && this.roomSeqs[m.roomId] === undefined) this.roomSeqs[m.roomId] = m.seq;
        // A leave we did not ask for: a refreshed token no longer allows the room.
        if (m.msgType === 6 && !this.waiters.some((w) => w.msgType === 6)) {
          this.rooms.delete(m.roomId);
          return this.emit("left", m);
        }
        return this.wake(m.msgType, m);
      default: return this.onMessage(m);
    }
  }

  onLogin(m) {
    this.backoffMs = 500;
    this.authFailures = 0;
    this.refreshing = false;
    if (this.inboxSeq === null) this.inboxSeq = m.inboxSeq;
    this.heartbeatSec = m.heartbeatSec || 25;
    clearInterval(this.hbTimer);
    this.hbTimer = setInterval(() => this.heartbeat(), this.heartbeatSec * 1000);
    this.setState("connected", `${m.sendUserId} on ${m.nodeId}`);
    this.emit("login", m);
    if (this.onFirstLogin) { this.onFirstLogin.resolve(m); this.onFirstLogin = null; }
  }

  onMessage(m) {
    if (m.msgId && this.seen.has(m.msgId)) return; // at-least-once: drop replays we already have
    // "Latest value wins": msgIds are time-ordered, so an update older than
    // the newest shown for this sender, destination and key is stale (a
    // datagram overtaken by a newer one) and is dropped.
    if (m.volatile && m.latest) {
      const k = [m.sendUserId, m.roomId || "", m.receivedUserId || "", m.latest].join("\u0000");
      const newest = this.latestSeen.get(k);
      if (newest !== undefined && m.msgId <= newest) return this.emit("stale", m);
      this.latestSeen.delete(k);
      this.latestSeen.set(k, m.msgId);
      if (this.latestSeen.size > 1000) this.latestSeen.delete(this.latestSeen.keys().next().value);
    }
    if (m.msgId) {
      this.seen.add(m.msgId);
      if (this.seen.size > 5000) this.seen.delete(this.seen.values().next().value);
    }
    if (m.seq !== undefined) {
      // A seq is a position in our inbox (direct messages) or in a room.
      if (m.receivedUserId !== undefined) {
        this.inboxSeq = Math.max(this.inboxSeq || 0, m.seq);
        this.scheduleCursor();
      } else if (m.roomId !== undefined) {
        this.roomSeqs[m.roomId] = Math.max(this.roomSeqs[m.roomId] || 0, m.seq);
      }
    }
    this.emit("message", m);
  }

  /** Tells the server, at most once a second, how far we hold our inbox. */
  scheduleCursor() {
    if (this.cursorTimer) return;
    this.cursorTimer = setTimeout(() => {
      this.cursorTimer = null;
      if (this.link && this.link.open) this.link.send(JSON.stringify({ msgType: 4, seq: this.inboxSeq }));
    }, 1000);
  }

  heartbeat() {
    if (!this.link || !this.link.open) return;
    // Three silent heartbeat periods: the link is dead even if it says open.
    if (Date.now() - this.lastInbound > 3 * this.heartbeatSec * 1000) {
      this.link.close(4408, "heartbeat timeout");
      return;
    }
    this.link.send(JSON.stringify({ msgType: 1 }));
  }

  settle(id, ok, err) {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (err) p.reject(Object.assign(new Error(err.reason), { code: err.code })); else p.resolve(ok);
  }

  wake(msgType, m) {
    const i = this.waiters.findIndex((w) => w.msgType === msgType || msgType === 9);
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      if (msgType === 9 && w.msgType !== 9) w.reject(Object.assign(new Error(m.reason), { code: m.code }));
      else w.resolve(m);
    }
  }

  request(frame) {
    return new Promise((resolve, reject) => {
      this.waiters.push({ msgType: frame.msgType, resolve, reject });
      this.link.send(JSON.stringify(frame));
    });
  }

  /** Sends a business message; resolves with the ack (msgId, seq) once stored. */
  send(msg) {
    const frame = Object.assign({ msgType: 3 }, msg);
    if (frame.volatile) { this.link.sendVolatile(JSON.stringify(frame)); return Promise.resolve(null); }
    frame.clientMsgId = frame.clientMsgId || `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    return new Promise((resolve, reject) => {
      this.pending.set(frame.clientMsgId, { resolve, reject });
      this.link.send(JSON.stringify(frame));
    });
  }

  /**
   * A volatile "latest value wins" update (typing, cursor, location): receivers drop one older than
   * the newest they have for this sender, destination and `key`.
   */
  sendLatest(dest, key, body) {
    return this.send(Object.assign({}, dest, { msgBody: body, volatile: true, latest: key }));
  }

  sendToUser(userId, body, extra) { return this.send(Object.assign({ receivedUserId: userId, msgBody: body }, extra)); }
  sendToRoom(roomId, body, extra) { return this.send(Object.assign({ roomId, msgBody: body }, extra)); }

  async join(roomId) {
    const r = await this.request({ msgType: 5, roomId });
    this.rooms.add(roomId);
    return r;
  }

  async leave(roomId) {
    this.rooms.delete(roomId);
    return this.request({ msgType: 6, roomId });
  }

  history(roomId, since = 0, limit = 50) { return this.request({ msgType: 7, roomId, since, limit }); }
  presence(roomId) { return this.request({ msgType: 8, roomId }); }
}

/** WebSocket: each text message is one frame. */
class WsLink {
  static open(opts, h) {
    return new Promise((resolve) => {
      const u = new URL(opts.url);
      u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
      u.pathname = "/ws";
      if (opts.token) u.searchParams.set("token", opts.token);
      const ws = new WebSocket(u.toString());
      const link = new WsLink(ws);
      h.link = link;
      ws.onopen = () => resolve(link);
      ws.onmessage = (ev) => h.onmessage(ev.data);
      // A socket that never opened also ends here; the client reconnects.
      ws.onclose = (ev) => { link.open = false; resolve(link); h.onclose(ev.code, ev.reason); };
      ws.onerror = () => {};
    });
  }

  constructor(ws) { this.ws = ws; this.kind = "websocket"; this.open = true; }
  send(text) { if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text); }
  sendVolatile(text) { this.send(text); }
  close(code, reason) { this.open = false; this.ws.close(code, reason); }
}

/**
 * WebTransport: one bidirectional stream of 4-byte big-endian length-prefixed frames (login, acks,
 * replies, our sends), a server-opened stream per channel for stored messages, plus datagrams.
 */
class WtLink {
  static async open(opts, timeoutMs, h) {
    const base = new URL(opts.url);
    let url = opts.wtUrl;
    const wtOpts = {};
    const info = await (await fetch(new URL("/cert-hash", base))).json();
    if (!url) url = info.url;
    if (info.dev) {
      const bytes = Uint8Array.from(atob(info.value), (c) => c.charCodeAt(0));
      wtOpts.serverCertificateHashes = [{ algorithm: "sha-256", value: bytes }];
    }
    const u = new URL(url);
    if (opts.token) u.searchParams.set("token", opts.token);
    const wt = new WebTransport(u.toString(), wtOpts);
    let timer;
    const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("webtransport timed out")), timeoutMs); });
    try {
      await Promise.race([wt.ready, timeout]);
    } catch (e) {
      try { wt.close(); } catch (_) { /* already failed */ }
      wt.closed.catch(() => {});
      throw e;
    } finally {
      clearTimeout(timer);
    }
    const stream = await wt.createBidirectionalStream();
    const link = new WtLink(wt, stream.writable.getWriter());
    h.link = link;
    link.readFrames(stream.readable.getReader(), h);
    link.readChannelStreams(h);
    link.readDatagrams(h);
    wt.closed.then((info) => h.onclose(info.closeCode || 1006, info.reason || ""), () => h.onclose(1006, "webtransport closed"))
      .finally(() => { link.open = false; });
    return link;
  }

  constructor(wt, writer) {
    this.wt = wt;
    this.writer = writer;
    this.kind = "webtransport";
    this.open = true;
    this.encoder = new TextEncoder();
    this.decoder = new TextDecoder();
    try { this.dgWriter = wt.datagrams.writable.getWriter(); } catch (_) { this.dgWriter = null; }
  }

  send(text) {
    const body = this.encoder.encode(text);
    const frame = new Uint8Array(4 + body.length);
    new DataView(frame.buffer).setUint32(0, body.length);
    frame.set(body, 4);
    this.writer.write(frame).catch(() => {});
  }

  /** Volatile messages go as datagrams when they fit. */
  sendVolatile(text) {
    const body = this.encoder.encode(text);
    const max = this.wt.datagrams.maxDatagramSize || 1000;
    if (this.dgWriter && body.length <= max) this.dgWriter.write(body).catch(() => {});
    else this.send(text);
  }

  async readFrames(reader, h) {
    let buf = new Uint8Array(0);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const next = new Uint8Array(buf.length + value.length);
        next.set(buf);
        next.set(value, buf.length);
        buf = next;
        while (buf.length >= 4) {
          const n = new DataView(buf.buffer, buf.byteOffset).getUint32(0);
          if (buf.length < 4 + n) break;
          h.onmessage(this.decoder.decode(buf.subarray(4, 4 + n)));
          buf = buf.slice(4 + n);
        }
      }
    } catch (_) { /* the session closed; wt.closed reports it */ }
  }

  /** The server sends each channel's messages (inbox, each room) on a stream it opens for it. */
  async readChannelStreams(h) {
    try {
      const streams = this.wt.incomingUnidirectionalStreams.getReader();
      for (;;) {
        const { value, done } = await streams.read();
        if (done) break;
        this.readFrames(value.getReader(), h);
      }
    } catch (_) { /* the session closed */ }
  }

  async readDatagrams(h) {
    try {
      const reader = this.wt.datagrams.readable.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        h.onmessage(this.decoder.decode(value));
      }
    } catch (_) { /* closed */ }
  }

  close(code, reason) {
    this.open = false;
    try { this.wt.close({ closeCode: code, reason }); } catch (_) { /* already closed */ }
  }
}

/** Which transport won for an origin, kept in localStorage for a while. */
const TransportMemory = {
  key(url) { return "rtgate.transport:" + new URL(url).origin; },
  get(url) {
    try {
      const v = JSON.parse(localStorage.getItem(this.key(url)) || "null");
      return v && v.until > Date.now() ? v.kind : null;
    } catch (_) { return null; }
  },
  set(url, kind, forMs) {
    try { localStorage.setItem(this.key(url), JSON.stringify({ kind, until: Date.now() + forMs })); } catch (_) { /* storage off */ }
  },
};

if (typeof module !== "undefined") module.exports = { RtgateClient };
