// rtgate browser client: one API over the server's WebSocket endpoint, with
// login, heartbeats, acks, automatic reconnect with backoff and resume from
// the last seen positions (so nothing stored is missed across a reconnect).
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
   * @param {string[]} [opts.rooms] rooms to join at every login
   */
  constructor(opts) {
    this.opts = Object.assign({ url: location.origin, rooms: [] }, opts);
    this.state = "idle";
    this.transport = null;
    this.listeners = {};
    this.pending = new Map(); // clientMsgId -> {resolve, reject}
    this.waiters = []; // replies awaited by msgType
    this.rooms = new Set(this.opts.rooms);
    this.inboxSeq = null; // last inbox seq seen; null until the first login
    this.roomSeqs = {}; // room -> last seq seen
    this.seen = new Set(); // msgIds already delivered to the page
    this.backoffMs = 500;
    this.closedByUser = false;
    this.hbTimer = null;
    this.lastInbound = 0;
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
    if (this.ws) this.ws.close(1000, "bye");
    this.setState("closed");
  }

  wsUrl() {
    const u = new URL(this.opts.url);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.pathname = "/ws";
    if (this.opts.token) u.searchParams.set("token", this.opts.token);
    return u.toString();
  }

  open() {
    this.setState("connecting");
    const ws = new WebSocket(this.wsUrl());
    this.ws = ws;
    ws.onopen = () => {
      this.transport = "websocket";
      this.lastInbound = Date.now();
      this.setState("logging-in");
      const login = { msgType: 2, sendUserId: this.opts.userId, rooms: [...this.rooms] };
      if (this.opts.token) login.token = this.opts.token;
      // Resume: replay what arrived while we were away.
      if (this.inboxSeq !== null) {
        login.since = { inbox: this.inboxSeq, rooms: Object.assign({}, this.roomSeqs) };
      }
      ws.send(JSON.stringify(login));
    };
    ws.onmessage = (ev) => this.onFrame(ev.data);
    ws.onclose = (ev) => this.onClose(ev.code, ev.reason);
    ws.onerror = () => {}; // onclose follows
  }

  onClose(code, reason) {
    clearInterval(this.hbTimer);
    for (const [, p] of this.pending) p.reject(new Error(`connection closed (${code})`));
    this.pending.clear();
    if (this.closedByUser) return;
    // 4401/4403: credentials are wrong, retrying cannot help.
    if (code === 4401 || code === 4403) {
      this.setState("refused", `${code} ${reason}`);
      if (this.onFirstLogin) this.onFirstLogin.reject(new Error(`login refused: ${code} ${reason}`));
      return;
    }
    const delay = Math.min(this.backoffMs, 15000) * (0.5 + Math.random());
    this.backoffMs = Math.min(this.backoffMs * 2, 15000);
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
        if (m.clientMsgId && this.pending.has(m.clientMsgId)) return this.settle(m.clientMsgId, null, m);
        this.emit("error", m);
        return this.wake(9, m);
      case 5: case 6: case 7: case 8:
        if (m.msgType === 5 && m.roomId && this.roomSeqs[m.roomId] === undefined) this.roomSeqs[m.roomId] = m.seq;
        return this.wake(m.msgType, m);
      default: return this.onMessage(m);
    }
  }

  onLogin(m) {
    this.backoffMs = 500;
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
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ msgType: 4, seq: this.inboxSeq }));
      }
    }, 1000);
  }

  heartbeat() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    // Three silent heartbeat periods: the link is dead even if the socket says open.
    if (Date.now() - this.lastInbound > 3 * this.heartbeatSec * 1000) {
      this.ws.close(4408, "heartbeat timeout");
      return;
    }
    this.ws.send(JSON.stringify({ msgType: 1 }));
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
      this.ws.send(JSON.stringify(frame));
    });
  }

  /** Sends a business message; resolves with the ack (msgId, seq) once stored. */
  send(msg) {
    const frame = Object.assign({ msgType: 3 }, msg);
    if (frame.volatile) { this.ws.send(JSON.stringify(frame)); return Promise.resolve(null); }
    frame.clientMsgId = frame.clientMsgId || `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    return new Promise((resolve, reject) => {
      this.pending.set(frame.clientMsgId, { resolve, reject });
      this.ws.send(JSON.stringify(frame));
    });
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

if (typeof module !== "undefined") module.exports = { RtgateClient };
