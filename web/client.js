// rtgate browser client, built from clients/js (npm run build); do not edit.
// Source, types and docs: clients/js. License: MIT OR Apache-2.0.
"use strict";
(() => {
  var __defProp = Object.defineProperty;
  var __export = (target, all) => {
    for (var name in all)
      __defProp(target, name, { get: all[name], enumerable: true });
  };

  // src/index.ts
  var index_exports = {};
  __export(index_exports, {
    Backoff: () => Backoff,
    DeliveredReceipts: () => DeliveredReceipts,
    DeliveryFilter: () => DeliveryFilter,
    FrameDecoder: () => FrameDecoder,
    IndexedDbStore: () => IndexedDbStore,
    MemoryStore: () => MemoryStore,
    Outbox: () => Outbox,
    PositionTracker: () => PositionTracker,
    RtgateClient: () => RtgateClient,
    RtgateError: () => RtgateError,
    TransportMemory: () => TransportMemory,
    encodeFrame: () => encodeFrame,
    receiptFrames: () => receiptFrames,
    tokenSubject: () => tokenSubject
  });

  // src/backoff.ts
  var Backoff = class {
    constructor(firstMs = 500, maxMs = 15e3, random = Math.random) {
      this.firstMs = firstMs;
      this.maxMs = maxMs;
      this.random = random;
      this.attempt = 0;
    }
    /** The next delay: uniform in [0, min(max, first * 2^attempt)], at least 50 ms. */
    next() {
      const ceiling = Math.min(this.maxMs, this.firstMs * 2 ** Math.min(this.attempt, 30));
      this.attempt += 1;
      return Math.max(50, Math.round(this.random() * ceiling));
    }
    /** After a good login. */
    reset() {
      this.attempt = 0;
    }
    get attempts() {
      return this.attempt;
    }
  };

  // src/copies.ts
  var MAX_HELD = 256;
  var EarlyCopies = class {
    /** `positionOf` answers a channel's last delivered seq, if known. */
    constructor(positionOf) {
      this.positionOf = positionOf;
      this.held = /* @__PURE__ */ new Map();
    }
    get size() {
      return this.held.size;
    }
    has(msgId) {
      return this.held.has(msgId);
    }
    /** Takes back a held copy (its stream copy came). */
    take(msgId) {
      const m = this.held.get(msgId);
      this.held.delete(msgId);
      return m;
    }
    /** Holds `m` if it came ahead of its channel (true); `deliver` gets the
     * oldest held copy when there is no room left. */
    hold(m, deliver) {
      if (m.seq === void 0 || m.volatile || !m.msgId) return false;
      const at = this.positionOf(m);
      if (at === void 0 || m.seq <= at + 1) return false;
      if (this.held.size >= MAX_HELD) {
        const [id, oldest] = this.held.entries().next().value;
        this.held.delete(id);
        deliver(oldest);
      }
      this.held.set(m.msgId, m);
      return true;
    }
    /** Hands `deliver` the held copies that are now next in their channel, in seq order. */
    release(deliver) {
      for (let again = true; again && this.held.size > 0; ) {
        again = false;
        for (const [id, m] of this.held) {
          const at = this.positionOf(m);
          if (at === void 0 || m.seq <= at + 1) {
            this.held.delete(id);
            deliver(m);
            again = true;
          }
        }
      }
    }
  };

  // src/dedupe.ts
  var BoundedSet = class {
    constructor(limit) {
      this.limit = limit;
      this.items = /* @__PURE__ */ new Set();
    }
    has(v) {
      return this.items.has(v);
    }
    add(v) {
      this.items.add(v);
      if (this.items.size > this.limit) this.items.delete(this.items.values().next().value);
    }
    get size() {
      return this.items.size;
    }
  };
  var DeliveryFilter = class {
    constructor() {
      this.seen = new BoundedSet(5e3);
      this.latest = /* @__PURE__ */ new Map();
    }
    check(m) {
      if (m.msgId && this.seen.has(m.msgId)) return "duplicate";
      if (m.volatile && m.latest && m.msgId) {
        const k = [m.sendUserId, m.roomId ?? "", m.receivedUserId ?? "", m.latest].join("\0");
        const newest = this.latest.get(k);
        if (newest !== void 0 && m.msgId <= newest) return "stale";
        this.latest.delete(k);
        this.latest.set(k, m.msgId);
        if (this.latest.size > 1e3) this.latest.delete(this.latest.keys().next().value);
      }
      if (m.msgId) this.seen.add(m.msgId);
      return "new";
    }
  };

  // src/emitter.ts
  var Emitter = class {
    constructor() {
      this.listeners = {};
    }
    /** Adds a listener; returns a function that removes it. */
    on(event, fn) {
      (this.listeners[event] ??= []).push(fn);
      return () => this.off(event, fn);
    }
    off(event, fn) {
      const list = this.listeners[event];
      if (list) this.listeners[event] = list.filter((f) => f !== fn);
    }
    /** Calls every listener; one that throws is reported and does not stop the others. */
    emit(event, arg) {
      for (const fn of this.listeners[event] ?? []) {
        try {
          fn(arg);
        } catch (e) {
          console.error(e);
        }
      }
    }
    removeAll() {
      this.listeners = {};
    }
  };

  // src/errors.ts
  var RtgateError = class extends Error {
    constructor(code, reason, clientMsgId) {
      super(reason);
      this.name = "RtgateError";
      this.code = code;
      this.clientMsgId = clientMsgId;
    }
  };

  // src/framing.ts
  var encoder = new TextEncoder();
  function encodeFrame(text) {
    const body = encoder.encode(text);
    const frame = new Uint8Array(4 + body.length);
    new DataView(frame.buffer).setUint32(0, body.length);
    frame.set(body, 4);
    return frame;
  }
  var FrameDecoder = class {
    constructor() {
      this.buf = new Uint8Array(0);
      this.decoder = new TextDecoder();
    }
    /** Takes a chunk; returns the frames it completed, in order. */
    push(chunk) {
      if (this.buf.length === 0) {
        this.buf = chunk;
      } else {
        const next = new Uint8Array(this.buf.length + chunk.length);
        next.set(this.buf);
        next.set(chunk, this.buf.length);
        this.buf = next;
      }
      const frames = [];
      let at = 0;
      while (this.buf.length - at >= 4) {
        const n = new DataView(this.buf.buffer, this.buf.byteOffset + at).getUint32(0);
        if (this.buf.length - at < 4 + n) break;
        frames.push(this.decoder.decode(this.buf.subarray(at + 4, at + 4 + n)));
        at += 4 + n;
      }
      this.buf = at === 0 ? this.buf : this.buf.slice(at);
      return frames;
    }
    /** Bytes of an unfinished frame held. */
    get pending() {
      return this.buf.length;
    }
  };

  // src/links.ts
  var WsLink = class _WsLink {
    constructor(ws) {
      this.ws = ws;
      this.kind = "websocket";
      this.datagrams = false;
      this.open = true;
    }
    /** Resolves with the link once open, or with a closed link when it never opened. */
    static open(opts, h) {
      return new Promise((resolve) => {
        const u = new URL(opts.url);
        u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
        u.pathname = "/ws";
        if (opts.token) u.searchParams.set("token", opts.token);
        const ws = new WebSocket(u.toString());
        const link = new _WsLink(ws);
        h.link = link;
        ws.onopen = () => resolve(link);
        ws.onmessage = (ev) => h.onmessage(ev.data);
        ws.onclose = (ev) => {
          link.open = false;
          resolve(link);
          h.onclose(ev.code, ev.reason);
        };
        ws.onerror = () => {
        };
      });
    }
    send(text) {
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    }
    sendVolatile(text) {
      this.send(text);
    }
    close(code, reason) {
      this.open = false;
      this.ws.close(code, reason);
    }
  };
  var SAFE_DATAGRAM = 1e3;
  var WtLink = class _WtLink {
    constructor(wt, writer) {
      this.wt = wt;
      this.writer = writer;
      this.kind = "webtransport";
      this.open = true;
      this.encoder = new TextEncoder();
      this.decoder = new TextDecoder();
      this.handlers = null;
      let dg = null;
      try {
        dg = wt.datagrams.writable ? wt.datagrams.writable.getWriter() : null;
      } catch {
        dg = null;
      }
      this.dgWriter = dg;
      const reported = wt.datagrams.maxDatagramSize;
      this.dgMax = Math.min(reported || SAFE_DATAGRAM, SAFE_DATAGRAM);
    }
    get datagrams() {
      return this.dgWriter !== null;
    }
    /**
     * Opens a session (trusting the dev certificate's hash when `/cert-hash`
     * says the server runs on one) and its data stream; rejects after `timeoutMs`.
     */
    static async open(opts, timeoutMs, h) {
      const base = new URL(opts.url);
      const info = await (await fetch(new URL("/cert-hash", base))).json();
      const wtOpts = {};
      if (info.dev) {
        const bytes = Uint8Array.from(atob(info.value), (c) => c.charCodeAt(0));
        wtOpts.serverCertificateHashes = [{ algorithm: "sha-256", value: bytes }];
      }
      const u = new URL(opts.wtUrl || info.url);
      if (opts.token) u.searchParams.set("token", opts.token);
      const wt = new WebTransport(u.toString(), wtOpts);
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("webtransport timed out")), timeoutMs);
      });
      try {
        await Promise.race([wt.ready, timeout]);
      } catch (e) {
        try {
          wt.close();
        } catch {
        }
        wt.closed.catch(() => {
        });
        throw e;
      } finally {
        clearTimeout(timer);
      }
      const stream = await wt.createBidirectionalStream();
      const link = new _WtLink(wt, stream.writable.getWriter());
      link.handlers = h;
      h.link = link;
      void link.readFrames(stream.readable.getReader(), h);
      void link.readChannelStreams(h);
      void link.readDatagrams(h);
      wt.closed.then(
        (c) => h.onclose(c.closeCode || 1006, c.reason || ""),
        () => h.onclose(1006, "webtransport closed")
      ).finally(() => {
        link.open = false;
      });
      return link;
    }
    send(text) {
      this.writer.write(encodeFrame(text)).catch(() => {
      });
    }
    sendVolatile(text) {
      const body = this.encoder.encode(text);
      const dg = this.dgWriter;
      if (!dg || body.length > this.dgMax) return this.send(text);
      dg.write(body).catch((e) => {
        if (!this.open) return;
        if (this.dgWriter === dg) {
          this.dgWriter = null;
          this.handlers?.ondatagramsoff?.(`the browser refused a datagram (${String(e)})`);
        }
        this.send(text);
      });
    }
    async readFrames(reader, h) {
      const frames = new FrameDecoder();
      try {
        for (; ; ) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const f of frames.push(value)) h.onmessage(f);
        }
      } catch {
      }
    }
    /** The server sends each channel's messages (inbox, each room) on a stream it opens for it. */
    async readChannelStreams(h) {
      try {
        const streams = this.wt.incomingUnidirectionalStreams.getReader();
        for (; ; ) {
          const { value, done } = await streams.read();
          if (done) break;
          void this.readFrames(value.getReader(), h);
        }
      } catch {
      }
    }
    async readDatagrams(h) {
      try {
        const reader = this.wt.datagrams.readable.getReader();
        for (; ; ) {
          const { value, done } = await reader.read();
          if (done) break;
          h.onmessage(this.decoder.decode(value), true);
        }
      } catch {
      }
    }
    close(code, reason) {
      this.open = false;
      try {
        this.wt.close({ closeCode: code, reason });
      } catch {
      }
    }
  };

  // src/memory.ts
  var TransportMemory = class _TransportMemory {
    constructor(storage, now = Date.now) {
      this.storage = storage;
      this.now = now;
    }
    /** The page's localStorage, or none (private mode, workers, Node). */
    static local() {
      let storage = null;
      try {
        storage = globalThis.localStorage ?? null;
      } catch {
        storage = null;
      }
      return new _TransportMemory(storage);
    }
    key(url) {
      return "rtgate.transport:" + new URL(url).origin;
    }
    get(url) {
      try {
        const v = JSON.parse(this.storage?.getItem(this.key(url)) ?? "null");
        const kind = v?.kind === "webtransport" || v?.kind === "websocket" ? v.kind : null;
        return kind && typeof v.until === "number" && v.until > this.now() ? kind : null;
      } catch {
        return null;
      }
    }
    set(url, kind, forMs) {
      try {
        this.storage?.setItem(this.key(url), JSON.stringify({ kind, until: this.now() + forMs }));
      } catch {
      }
    }
  };

  // src/outbox.ts
  var Outbox = class {
    constructor(onChange = () => {
    }) {
      this.onChange = onChange;
      this.entries = /* @__PURE__ */ new Map();
    }
    /** Queues a frame; settles with its ack, or rejects after `timeoutMs`. */
    add(frame, timeoutMs) {
      if (this.entries.has(frame.clientMsgId)) {
        return Promise.reject(new RtgateError(400, "clientMsgId already pending", frame.clientMsgId));
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => this.fail(frame.clientMsgId, new RtgateError(408, `no ack within ${timeoutMs} ms`, frame.clientMsgId)),
          timeoutMs
        );
        this.entries.set(frame.clientMsgId, { frame, resolve, reject, timer, writtenOn: -1 });
        this.onChange(this.entries.size);
      });
    }
    /**
     * The frames to write on connection `conn`, oldest first: those never
     * written on it. They count as written once returned.
     */
    due(conn) {
      const out = [];
      for (const e of this.entries.values()) {
        if (e.writtenOn !== conn) {
          e.writtenOn = conn;
          out.push(e.frame);
        }
      }
      return out;
    }
    /** Writes a frame again on the next flush (the server could not store it: 503). */
    retry(id) {
      const e = this.entries.get(id);
      if (e) e.writtenOn = -1;
      return e !== void 0;
    }
    /** The ack arrived. */
    settle(id, ack) {
      const e = this.take(id);
      e?.resolve(ack);
      return e !== void 0;
    }
    /** The server refused it, or its time ran out. */
    fail(id, err) {
      const e = this.take(id);
      e?.reject(err);
      return e !== void 0;
    }
    /** Rejects everything (the client closed, or login was refused for good). */
    failAll(err) {
      for (const id of [...this.entries.keys()]) this.fail(id, err(id));
    }
    has(id) {
      return this.entries.has(id);
    }
    get size() {
      return this.entries.size;
    }
    take(id) {
      const e = this.entries.get(id);
      if (!e) return void 0;
      clearTimeout(e.timer);
      this.entries.delete(id);
      this.onChange(this.entries.size);
      return e;
    }
  };
  function newClientMsgId() {
    const rand = typeof crypto !== "undefined" && "randomUUID" in crypto ? crypto.randomUUID().replace(/-/g, "").slice(0, 16) : Math.random().toString(36).slice(2, 12);
    return `${Date.now().toString(36)}-${rand}`;
  }

  // src/positions.ts
  var MAX_SAVED_ROOMS = 1e3;
  var MAX_ID = 256;
  var isSeq = (v) => Number.isSafeInteger(v) && v >= 0;
  var isId = (v) => typeof v === "string" && v.length > 0 && v.length <= MAX_ID;
  function sanitize(v) {
    if (typeof v !== "object" || v === null) return null;
    const o = v;
    const user = isId(o.user) ? o.user : null;
    if (user === null) return null;
    const inbox = isSeq(o.inbox) ? o.inbox : null;
    const joined = Array.isArray(o.joined) ? o.joined.filter(isId).slice(0, MAX_SAVED_ROOMS) : [];
    const rooms = {};
    if (typeof o.rooms === "object" && o.rooms !== null && !Array.isArray(o.rooms)) {
      for (const [r, seq] of Object.entries(o.rooms).slice(0, MAX_SAVED_ROOMS)) {
        if (isId(r) && isSeq(seq)) rooms[r] = seq;
      }
    }
    return { user, inbox, rooms, joined: [...new Set(joined)] };
  }
  var MemoryStore = class {
    constructor() {
      this.map = /* @__PURE__ */ new Map();
    }
    async load(key) {
      const p = this.map.get(key);
      return p ? structuredClone(p) : null;
    }
    async save(key, p) {
      this.map.set(key, structuredClone(p));
    }
  };
  var IndexedDbStore = class {
    constructor(dbName = "rtgate") {
      this.dbName = dbName;
      this.db = null;
    }
    static available() {
      try {
        return typeof indexedDB !== "undefined" && indexedDB !== null;
      } catch {
        return false;
      }
    }
    open() {
      this.db ??= new Promise((resolve, reject) => {
        const req = indexedDB.open(this.dbName, 1);
        req.onupgradeneeded = () => req.result.createObjectStore("positions");
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      return this.db;
    }
    async run(mode, op) {
      const db = await this.open();
      return new Promise((resolve, reject) => {
        const tx = db.transaction("positions", mode);
        const req = op(tx.objectStore("positions"));
        tx.oncomplete = () => resolve(req.result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    }
    async load(key) {
      return await this.run("readonly", (s) => s.get(key)) ?? null;
    }
    async save(key, p) {
      await this.run("readwrite", (s) => s.put(p, key));
    }
  };
  var PositionTracker = class {
    constructor(rooms = []) {
      this.user = null;
      this.inbox = null;
      this.rooms = /* @__PURE__ */ new Map();
      this.joined = /* @__PURE__ */ new Set();
      for (const r of rooms) this.joined.add(r);
    }
    /** Takes saved positions (those of a page before a reload); the rooms asked for now stay. */
    restore(saved) {
      const p = sanitize(saved);
      if (p === null) return;
      this.user = p.user;
      this.inbox = p.inbox;
      for (const r of p.joined) this.joined.add(r);
      for (const [r, seq] of Object.entries(p.rooms)) if (this.joined.has(r)) this.rooms.set(r, seq);
    }
    /** A delivered message moves its channel's position; true when one moved. */
    observe(m) {
      if (m.seq === void 0) return false;
      if (m.receivedUserId !== void 0) {
        if (this.inbox !== null && m.seq <= this.inbox) return false;
        this.inbox = m.seq;
        return true;
      }
      if (m.roomId !== void 0 && this.joined.has(m.roomId)) {
        const at = this.rooms.get(m.roomId);
        if (at !== void 0 && m.seq <= at) return false;
        this.rooms.set(m.roomId, m.seq);
        return true;
      }
      return false;
    }
    /** The position of the channel `m` belongs to, if known (its last seq). */
    positionOf(m) {
      if (m.receivedUserId !== void 0) return this.inbox ?? void 0;
      if (m.roomId !== void 0 && this.joined.has(m.roomId)) return this.rooms.get(m.roomId);
      return void 0;
    }
    /** A login reply: the inbox position when none is known yet. */
    loggedIn(user, inboxSeq) {
      if (this.user !== null && this.user !== user) {
        this.inbox = null;
        this.rooms.clear();
      }
      this.user = user;
      if (this.inbox === null) this.inbox = inboxSeq;
    }
    /** A join answer: the room's position when none is known yet. */
    joinedRoom(room, seq) {
      this.joined.add(room);
      if (!this.rooms.has(room) && seq !== void 0) this.rooms.set(room, seq);
    }
    leftRoom(room) {
      this.joined.delete(room);
      this.rooms.delete(room);
    }
    /** The login's `since`, once there is something to resume from. */
    since() {
      if (this.inbox === null && this.rooms.size === 0) return void 0;
      const since = { rooms: Object.fromEntries(this.rooms) };
      if (this.inbox !== null) since.inbox = this.inbox;
      return since;
    }
    snapshot() {
      return { user: this.user, inbox: this.inbox, rooms: Object.fromEntries(this.rooms), joined: [...this.joined] };
    }
  };

  // src/receipts.ts
  var MAX_RECEIPT_IDS = 100;
  var DeliveredReceipts = class {
    constructor(send, delayMs = 300) {
      this.send = send;
      this.delayMs = delayMs;
      this.ids = [];
    }
    /** A direct message reached us. */
    add(msgId) {
      this.ids.push(msgId);
      if (this.ids.length >= MAX_RECEIPT_IDS) return this.flush();
      if (this.timer === void 0) this.timer = setTimeout(() => this.flush(), this.delayMs);
    }
    /** Sends what is gathered now. */
    flush() {
      clearTimeout(this.timer);
      this.timer = void 0;
      for (const frame of receiptFrames("delivered", this.ids.splice(0))) this.send(frame);
    }
    stop() {
      clearTimeout(this.timer);
      this.timer = void 0;
    }
  };
  function receiptFrames(kind, ids) {
    const frames = [];
    for (let i = 0; i < ids.length; i += MAX_RECEIPT_IDS) {
      frames.push({ msgType: 12, kind, msgIds: ids.slice(i, i + MAX_RECEIPT_IDS) });
    }
    return frames;
  }

  // src/client.ts
  var RtgateClient = class {
    constructor(opts = {}) {
      this.state = "idle";
      this.transport = null;
      /** The WebTransport draft of the current session (null on WebSocket). */
      this.wtDraft = null;
      /** The current connection; null between connections. */
      this.link = null;
      this.events = new Emitter();
      /** The user whose saved positions were loaded, once known. */
      this.loadedFor = null;
      /** A token fetched to learn the user, for the next connection to use. */
      this.tokenFetched = false;
      this.filter = new DeliveryFilter();
      this.memory = TransportMemory.local();
      this.waiters = [];
      /** Calls made while disconnected, run after the next login. */
      this.afterLogin = [];
      this.firstLogin = null;
      this.loaded = null;
      this.closedByUser = false;
      /** Counts logins: the outbox writes each frame once per connection. */
      this.conn = 0;
      this.heartbeatSec = 25;
      this.lastInbound = 0;
      this.lastErrorCode = null;
      this.refreshing = false;
      this.authFailures = 0;
      this.onPageHide = () => void this.savePositions();
      /** Room read positions waiting to be sent, per room. */
      this.roomReads = /* @__PURE__ */ new Map();
      /** Delivered receipts on their way, a moment's worth per frame. */
      this.delivered = new DeliveredReceipts((f) => this.sendNow(f));
      /** Datagram copies ahead of their channel, held until it catches up. */
      this.early = new EarlyCopies((m) => this.positions.positionOf(m));
      const origin = typeof location !== "undefined" ? location.origin : "http://127.0.0.1";
      this.opts = {
        url: origin,
        transport: "auto",
        wtTimeoutMs: 3e3,
        wtGraceMs: 250,
        wtMemoryMs: 6e5,
        sendTimeoutMs: 3e4,
        requestTimeoutMs: 1e4,
        ...opts
      };
      this.outbox = new Outbox((pending) => this.events.emit("outbox", { pending }));
      this.positions = new PositionTracker(this.opts.rooms ?? []);
      this.backoff = new Backoff(opts.backoffMs ?? 500, opts.maxBackoffMs ?? 15e3);
      this.resendBackoff = new Backoff(opts.backoffMs ?? 500, opts.maxBackoffMs ?? 15e3);
      const persist = opts.persist ?? true;
      this.store = typeof persist === "object" ? persist : persist && IndexedDbStore.available() ? new IndexedDbStore() : new MemoryStore();
      this.storePrefix = `${new URL(this.opts.url).origin}|`;
    }
    /** Rooms joined at every login. */
    get rooms() {
      return this.positions.joined;
    }
    /** Adds a listener (typed by event name). */
    on(event, fn) {
      this.events.on(event, fn);
      return this;
    }
    off(event, fn) {
      this.events.off(event, fn);
      return this;
    }
    /** Sends waiting for their ack (queued while disconnected, or written and not yet acked). */
    get pendingSends() {
      return this.outbox.size;
    }
    /** Connects and logs in; resolves with the first login reply. Reconnects on its own afterwards. */
    async connect() {
      this.closedByUser = false;
      await this.loadPositions();
      return new Promise((resolve, reject) => {
        this.firstLogin = { resolve, reject };
        void this.open();
      });
    }
    /**
     * Closes for good: no reconnect, every pending send and request rejected
     * (code 410), timers stopped, positions saved.
     */
    async close() {
      this.closedByUser = true;
      this.stopTimers();
      if (typeof removeEventListener !== "undefined") removeEventListener("pagehide", this.onPageHide);
      this.outbox.failAll((id) => new RtgateError(410, "client closed", id));
      this.rejectWaiters(410, "client closed");
      this.afterLogin = [];
      this.link?.close(1e3, "bye");
      this.link = null;
      this.setState("closed");
      await this.savePositions();
    }
    /** Sends a business message; resolves with its ack once stored (after a reconnect if need be). */
    send(msg) {
      const frame = { msgType: 3, ...msg };
      if (frame.volatile) {
        if (this.connected) this.link.sendVolatile(JSON.stringify(frame));
        return Promise.resolve(null);
      }
      const out = { ...frame, clientMsgId: frame.clientMsgId || newClientMsgId() };
      const acked = this.outbox.add(out, this.opts.sendTimeoutMs);
      this.flush();
      return acked;
    }
    sendToUser(userId, body, extra = {}) {
      return this.send({ receivedUserId: userId, msgBody: body, ...extra });
    }
    sendToRoom(roomId, body, extra = {}) {
      return this.send({ roomId, msgBody: body, ...extra });
    }
    /**
     * A volatile "latest value wins" update (typing, cursor, location):
     * receivers drop one older than the newest they have for this sender,
     * destination and `key`.
     */
    sendLatest(dest, key, body) {
      return this.send({ ...dest, msgBody: body, volatile: true, latest: key });
    }
    async join(roomId) {
      const frame = { msgType: 5, roomId };
      if (this.opts.presenceEvents) frame.presenceEvents = true;
      const r = await this.request(frame);
      this.positions.joinedRoom(r.roomId, r.seq);
      this.scheduleSave();
      return r;
    }
    async leave(roomId) {
      this.positions.leftRoom(String(roomId));
      this.scheduleSave();
      return this.request({ msgType: 6, roomId });
    }
    history(roomId, since = 0, limit = 50) {
      return this.request({ msgType: 7, roomId, since, limit });
    }
    presence(roomId) {
      return this.request({ msgType: 8, roomId });
    }
    // --- chat: receipts, read state, amendments, typing -------------------
    /** "I have read these direct messages" (their senders get a receipt). */
    markRead(msgIds) {
      for (const f of receiptFrames("read", msgIds)) this.sendNow(f);
    }
    /**
     * "I have read this room up to `seq`" (its members are told). Sent at
     * most twice a second per room, the furthest position: a busy room read
     * message by message costs the server one receipt per half second.
     */
    markRoomRead(roomId, seq) {
      const room = String(roomId);
      this.roomReads.set(room, Math.max(seq, this.roomReads.get(room) ?? 0));
      if (this.roomReadTimer !== void 0) return;
      this.roomReadTimer = setTimeout(() => {
        this.roomReadTimer = void 0;
        for (const [r, s] of this.roomReads) this.sendNow({ msgType: 12, kind: "read", roomId: r, seq: s });
        this.roomReads.clear();
      }, 500);
    }
    /** "These direct messages reached me" (done by itself unless `autoDelivered: false`). */
    markDelivered(msgIds) {
      for (const f of receiptFrames("delivered", msgIds)) this.sendNow(f);
    }
    /** Unread counts of the inbox and every room joined or read. */
    async unread() {
      const r = await this.request({ msgType: 13 });
      return r.unread;
    }
    /** Members' read positions in a room (paged by `after`), and our unread count there. */
    readState(roomId, opts = {}) {
      return this.request({ msgType: 13, roomId, ...opts });
    }
    /** Replaces the body of one of our messages; resolves with the amendment's ack. */
    edit(msgId, body) {
      return this.sendStored({ msgType: 14, msgId, op: "edit", msgBody: body });
    }
    /** Deletes one of our messages (its body leaves the server's store). */
    delete(msgId) {
      return this.sendStored({ msgType: 14, msgId, op: "delete" });
    }
    /** Adds (or with `on = false` takes back) a reaction. */
    react(msgId, reaction, on = true) {
      return this.sendStored({ msgType: 14, msgId, op: on ? "react" : "unreact", reaction });
    }
    /** Tells a room or a user that we are typing (volatile; the server passes one a second). */
    typing(dest, typing = true) {
      if (this.connected) this.link.sendVolatile(JSON.stringify({ msgType: 15, ...dest, typing }));
    }
    /** A frame through the outbox: acked like a message, resent after a reconnect. */
    sendStored(frame) {
      const out = { ...frame, clientMsgId: newClientMsgId() };
      const acked = this.outbox.add(out, this.opts.sendTimeoutMs);
      this.flush();
      return acked;
    }
    /** A frame now, or after the next login. */
    sendNow(frame) {
      const write = () => this.link.send(JSON.stringify(frame));
      if (this.connected) write();
      else if (!this.closedByUser) this.afterLogin.push(write);
    }
    /** Delivers a message to the page unless it is a duplicate or a stale
     * "latest" update; a datagram copy ahead of its channel waits. */
    onMessage(m, datagram = false) {
      const deliver = (x) => this.deliver(x);
      if (datagram && m.seq !== void 0) {
        if (m.msgId && this.early.has(m.msgId)) return;
        if (this.early.hold({ ...m, via: "datagram" }, deliver)) return;
        m.via = "datagram";
      } else if (m.msgId && this.early.has(m.msgId)) {
        this.deliver(this.early.take(m.msgId));
        this.early.release(deliver);
        return;
      } else if (this.transport === "webtransport" && m.seq !== void 0) {
        m.via = "stream";
      }
      this.deliver(m);
      if (this.early.size > 0) this.early.release(deliver);
    }
    deliver(m) {
      const verdict = this.filter.check(m);
      if (verdict === "duplicate") return;
      if (verdict === "stale") return this.events.emit("stale", m);
      const notice = m.volatile === true;
      if (!notice && this.positions.observe(m)) {
        if (m.receivedUserId !== void 0) this.scheduleCursor();
        this.scheduleSave();
      }
      switch (m.msgType) {
        case 12:
          return this.events.emit("receipt", m);
        case 14:
          return this.events.emit("amended", m);
        case 15:
          return this.events.emit("typing", m);
      }
      const me = this.positions.user;
      if (this.opts.autoDelivered !== false && m.seq !== void 0 && m.msgId && m.receivedUserId !== void 0 && String(m.receivedUserId) === me && String(m.sendUserId) !== me) {
        this.delivered.add(m.msgId);
      }
      this.events.emit("message", m);
    }
    // --- connection -------------------------------------------------------
    get connected() {
      return this.state === "connected" && this.link !== null && this.link.open;
    }
    setState(state, detail) {
      this.state = state;
      const link = this.link;
      this.events.emit("state", {
        state,
        detail,
        transport: this.transport,
        wtDraft: this.wtDraft,
        datagrams: link ? link.datagrams : false
      });
    }
    /** The user a login will be, when it is known before the server says
     * (`userId`, or the token's subject); not with cookies alone. */
    expectedUser() {
      return this.opts.userId ?? tokenSubject(this.opts.token);
    }
    /** Loads the positions saved for `user` (once per user), so that the
     * login resumes with them. Another user's positions are never loaded:
     * on a shared browser they would skip this user's messages. */
    async loadPositionsOf(user) {
      if (this.loadedFor === user) return null;
      this.loadedFor = user;
      try {
        const saved = sanitize(await this.store.load(this.storePrefix + user));
        if (saved && saved.user === user) {
          this.positions.restore(saved);
          return saved;
        }
      } catch (e) {
        this.events.emit("error", { msgType: 9, code: 0, reason: `positions not loaded: ${e}` });
      }
      return null;
    }
    loadPositions() {
      this.loaded ??= (async () => {
        if (typeof addEventListener !== "undefined") addEventListener("pagehide", this.onPageHide);
        if (this.opts.userId === void 0 && this.opts.getToken && this.opts.token === void 0) {
          await this.freshToken();
          this.tokenFetched = true;
        }
        const user = this.expectedUser();
        if (user !== void 0) await this.loadPositionsOf(user);
      })();
      return this.loaded;
    }
    /** After a login whose user was not known before it (cookies): that
     * user's saved positions are loaded now, and what its joined rooms got
     * since is fetched with history, as a `since` would have replayed it. */
    async catchUp(user) {
      const inbox = this.positions.inbox;
      const saved = await this.loadPositionsOf(user);
      if (!saved) return;
      if (inbox !== null && (this.positions.inbox === null || this.positions.inbox < inbox)) {
        this.positions.inbox = inbox;
      }
      for (const [room, from] of Object.entries(saved.rooms)) {
        if (!this.positions.joined.has(room)) continue;
        let since = from;
        for (let page = 0; page < 100; page++) {
          let h;
          try {
            h = await this.history(room, since, 100);
          } catch {
            break;
          }
          for (const m of h.messages ?? []) this.onMessage(m);
          const last = h.messages?.[h.messages.length - 1]?.seq;
          if (last === void 0 || (h.messages?.length ?? 0) < 100) break;
          since = last;
        }
      }
    }
    async freshToken() {
      if (!this.opts.getToken) return;
      try {
        this.opts.token = await this.opts.getToken();
      } catch (e) {
        this.events.emit("error", { msgType: 9, code: 0, reason: `getToken: ${e}` });
      }
    }
    /** Answers the server's "credentials expire soon" with new ones (msgType 10). */
    async refresh() {
      if (this.refreshing || !this.opts.getToken || !this.link?.open) return;
      this.refreshing = true;
      await this.freshToken();
      if (this.link?.open) this.link.send(JSON.stringify({ msgType: 10, token: this.opts.token }));
    }
    async open() {
      this.reconnectTimer = void 0;
      if (this.closedByUser) return;
      this.setState("connecting");
      if (this.tokenFetched) this.tokenFetched = false;
      else await this.freshToken();
      const link = await this.openLink();
      if (!link || !link.open || this.closedByUser) return;
      this.link = link;
      this.lastErrorCode = null;
      this.transport = link.kind;
      this.lastInbound = Date.now();
      this.setState("logging-in");
      const login = { msgType: 2, rooms: [...this.positions.joined] };
      if (this.opts.userId !== void 0) login.sendUserId = this.opts.userId;
      if (this.opts.token) login.token = this.opts.token;
      if (this.opts.presenceEvents) login.presenceEvents = true;
      if (link.kind === "webtransport" && (this.opts.redundancy ?? "auto") !== "off") {
        login.redundancy = this.opts.redundancy ?? "auto";
      }
      const since = this.positions.since();
      if (since) login.since = since;
      link.send(JSON.stringify(login));
    }
    /**
     * "auto" races WebTransport against WebSocket: WebTransport wins if it is
     * ready first, or within `wtGraceMs` of the WebSocket; otherwise the
     * WebSocket is used at once and the WebTransport attempt dropped. The
     * winner is remembered for this origin (`wtMemoryMs`), so a returning user
     * on a network that blocks UDP goes straight to WebSocket.
     */
    async openLink() {
      const o = this.opts;
      const mode = o.transport;
      const canWt = mode !== "websocket" && typeof WebTransport !== "undefined";
      if (!canWt) return this.choose(await this.openWs());
      if (mode === "webtransport") {
        try {
          return this.choose(await WtLink.open(o, o.wtTimeoutMs, this.handlers()));
        } catch (e) {
          this.events.emit("fallback", errorText(e));
          this.onClose(0, errorText(e));
          return null;
        }
      }
      const memory = this.memory.get(o.url);
      if (memory === "websocket") {
        this.events.emit("fallback", "it failed here recently");
        return this.choose(await this.openWs());
      }
      const wtP = WtLink.open(o, o.wtTimeoutMs, this.handlers()).then(
        (link) => {
          this.memory.set(o.url, "webtransport", o.wtMemoryMs);
          return link;
        },
        (e) => {
          this.memory.set(o.url, "websocket", o.wtMemoryMs);
          this.events.emit("fallback", errorText(e));
          return null;
        }
      );
      const wsP = this.openWs();
      const grace = memory === "webtransport" ? 4 * o.wtGraceMs : o.wtGraceMs;
      const wt = await Promise.race([
        wtP,
        wsP.then((ws2) => ws2 ? new Promise((r) => setTimeout(() => r(void 0), grace)) : wtP)
      ]);
      if (wt) {
        void wsP.then((ws2) => ws2?.close(1e3, "webtransport preferred"));
        return this.choose(wt);
      }
      void wtP.then((late) => late?.close(1e3, "websocket chosen"));
      const ws = await wsP;
      if (!ws) {
        this.onClose(1006, "no transport connected");
        return null;
      }
      return this.choose(ws);
    }
    async openWs() {
      const link = await WsLink.open(this.opts, this.handlers());
      return link.open ? link : null;
    }
    /** Handlers for one link: its frames and close reach the client only while it is the chosen link. */
    handlers() {
      const h = {
        link: null,
        onmessage: (text, datagram) => {
          if (this.link === h.link) this.onFrame(text, datagram === true);
        },
        onclose: (code, reason) => {
          if (this.link === h.link) this.onClose(code, reason);
        },
        ondatagramsoff: (reason) => {
          if (this.link === h.link && this.state === "connected") this.setState("connected", reason);
        }
      };
      return h;
    }
    choose(link) {
      if (!link) {
        this.onClose(1006, "no transport connected");
        return null;
      }
      if (this.closedByUser) {
        link.close(1e3, "bye");
        return null;
      }
      this.link = link;
      return link;
    }
    onClose(code, reason) {
      clearInterval(this.hbTimer);
      this.rejectWaiters(code, `connection closed (${code})`);
      if (this.closedByUser) return;
      if (code === 4401 && this.opts.getToken && this.authFailures < 2) {
        this.authFailures += 1;
        this.setState("reconnecting", "credentials expired; fetching a fresh token");
        this.reconnectTimer = setTimeout(() => void this.open(), 100 + Math.random() * 400);
        return;
      }
      const refused = code === 4401 || code === 4403 ? `${code} ${reason}` : this.state === "logging-in" && (this.lastErrorCode === 401 || this.lastErrorCode === 403) ? `${this.lastErrorCode}` : null;
      if (refused !== null) {
        this.setState("refused", refused);
        const err = new RtgateError(code || this.lastErrorCode || 0, `login refused: ${refused}`);
        this.outbox.failAll((id) => new RtgateError(err.code, err.message, id));
        this.firstLogin?.reject(err);
        this.firstLogin = null;
        return;
      }
      const delay = this.backoff.next();
      this.setState("reconnecting", `closed ${code}${reason ? " " + reason : ""}; retry in ${delay} ms`);
      this.reconnectTimer = setTimeout(() => void this.open(), delay);
    }
    onFrame(data, datagram = false) {
      this.lastInbound = Date.now();
      if (data === "pong") return;
      let m;
      try {
        m = JSON.parse(data);
      } catch {
        return;
      }
      switch (m.msgType) {
        case 1:
          return;
        case 2:
          return this.onLogin(m);
        case 4:
          this.resendBackoff.reset();
          this.outbox.settle(m.clientMsgId, m);
          return;
        case 9:
          return this.onError(m);
        case 10:
          if (this.refreshing) {
            this.refreshing = false;
            return this.events.emit("refreshed", m);
          }
          this.events.emit("expiring", m);
          void this.refresh();
          return;
        case 11:
          return this.events.emit("presence", m);
        case 5:
        case 6:
        case 7:
        case 8:
        case 13:
          if (m.msgType === 6 && this.waiterFor(m) < 0) {
            this.positions.leftRoom(m.roomId);
            this.scheduleSave();
            return this.events.emit("left", m);
          }
          if (m.msgType === 5 && this.waiterFor(m) < 0) {
            this.positions.joinedRoom(m.roomId, m.seq);
            this.scheduleSave();
          }
          return this.wake(m.msgType, m);
        default:
          return this.onMessage(m, datagram);
      }
    }
    onLogin(m) {
      this.backoff.reset();
      this.authFailures = 0;
      this.refreshing = false;
      this.conn += 1;
      const unknownBefore = this.loadedFor !== m.sendUserId;
      this.positions.loggedIn(m.sendUserId, m.inboxSeq);
      if (unknownBefore) void this.catchUp(m.sendUserId);
      this.scheduleSave();
      this.heartbeatSec = m.heartbeatSec || 25;
      clearInterval(this.hbTimer);
      this.hbTimer = setInterval(() => this.heartbeat(), this.heartbeatSec * 1e3);
      this.wtDraft = m.wtDraft ?? null;
      const link = this.link;
      const viaStream = link && link.kind === "webtransport" && !link.datagrams ? "; no datagrams here: volatile messages travel on the stream" : "";
      this.setState("connected", `${m.sendUserId} on ${m.nodeId}${viaStream}`);
      this.events.emit("login", m);
      this.firstLogin?.resolve(m);
      this.firstLogin = null;
      const deferred = this.afterLogin;
      this.afterLogin = [];
      for (const run of deferred) run();
      this.flush();
    }
    onError(m) {
      this.lastErrorCode = m.code;
      if (m.clientMsgId && this.outbox.has(m.clientMsgId)) {
        if (m.code === 503 && this.outbox.retry(m.clientMsgId)) {
          if (this.retryTimer === void 0) {
            this.retryTimer = setTimeout(() => {
              this.retryTimer = void 0;
              this.flush();
            }, this.resendBackoff.next());
          }
          return;
        }
        this.outbox.fail(m.clientMsgId, new RtgateError(m.code, m.reason, m.clientMsgId));
        return;
      }
      this.events.emit("error", m);
      this.wake(9, m);
    }
    /** Writes what the outbox has not yet written on this connection. */
    flush() {
      if (!this.connected) return;
      for (const frame of this.outbox.due(this.conn)) this.link.send(JSON.stringify(frame));
    }
    /** Tells the server, at most once a second, how far we hold our inbox. */
    scheduleCursor() {
      if (this.cursorTimer) return;
      this.cursorTimer = setTimeout(() => {
        this.cursorTimer = void 0;
        if (this.connected && this.positions.inbox !== null) {
          this.link.send(JSON.stringify({ msgType: 4, seq: this.positions.inbox }));
        }
      }, 1e3);
    }
    scheduleSave() {
      if (this.saveTimer) return;
      this.saveTimer = setTimeout(() => void this.savePositions(), 200);
    }
    async savePositions() {
      clearTimeout(this.saveTimer);
      this.saveTimer = void 0;
      try {
        const user = this.positions.user;
        if (user !== null) await this.store.save(this.storePrefix + user, this.positions.snapshot());
      } catch (e) {
        this.events.emit("error", { msgType: 9, code: 0, reason: `positions not saved: ${e}` });
      }
    }
    heartbeat() {
      if (!this.link?.open) return;
      if (Date.now() - this.lastInbound > 3 * this.heartbeatSec * 1e3) {
        this.link.close(4408, "heartbeat timeout");
        return;
      }
      this.link.send(JSON.stringify({ msgType: 1 }));
    }
    /**
     * A request answered by a reply of the same msgType and room (or an
     * error); waits for a login when offline.
     */
    request(frame) {
      return new Promise((resolve, reject) => {
        const timeoutMs = this.opts.requestTimeoutMs;
        const w = {
          msgType: frame.msgType,
          roomId: roomKey(frame.roomId),
          resolve,
          reject,
          timer: setTimeout(() => {
            this.waiters = this.waiters.filter((x) => x !== w);
            this.afterLogin = this.afterLogin.filter((x) => x !== write);
            reject(new RtgateError(408, `no answer within ${timeoutMs} ms`));
          }, timeoutMs)
        };
        const write = () => {
          this.waiters.push(w);
          this.link.send(JSON.stringify(frame));
        };
        if (this.closedByUser) {
          clearTimeout(w.timer);
          reject(new RtgateError(410, "client closed"));
        } else if (this.connected) write();
        else this.afterLogin.push(write);
      });
    }
    /**
     * The waiter a reply answers: the oldest request of its msgType for its
     * room (the server answers a session's requests in order). An error names
     * no request, so it goes to the oldest of any kind.
     */
    waiterFor(m) {
      if (m.msgType === 9) return this.waiters.length > 0 ? 0 : -1;
      const room = roomKey(m.roomId);
      return this.waiters.findIndex((w) => w.msgType === m.msgType && w.roomId === room);
    }
    wake(msgType, m) {
      const i = this.waiterFor(m);
      if (i < 0) return;
      const [w] = this.waiters.splice(i, 1);
      clearTimeout(w.timer);
      if (msgType === 9 && w.msgType !== 9) w.reject(new RtgateError(m.code, m.reason));
      else w.resolve(m);
    }
    rejectWaiters(code, reason) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) {
        clearTimeout(w.timer);
        w.reject(new RtgateError(code, reason));
      }
    }
    stopTimers() {
      this.delivered.flush();
      clearTimeout(this.roomReadTimer);
      this.roomReadTimer = void 0;
      for (const [r, s] of this.roomReads) this.sendNow({ msgType: 12, kind: "read", roomId: r, seq: s });
      this.roomReads.clear();
      clearInterval(this.hbTimer);
      for (const t of [this.cursorTimer, this.reconnectTimer, this.retryTimer]) clearTimeout(t);
      this.cursorTimer = this.reconnectTimer = this.retryTimer = void 0;
    }
  };
  function errorText(e) {
    return String(e?.message ?? e);
  }
  function tokenSubject(token) {
    if (!token) return void 0;
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const sub = JSON.parse(atob(part)).sub;
      return sub === void 0 ? void 0 : String(sub);
    } catch {
      return void 0;
    }
  }
  function roomKey(roomId) {
    return roomId === void 0 || roomId === null ? "" : String(roomId);
  }

  // src/global.ts
  Object.assign(globalThis, { Rtgate: index_exports, RtgateClient });
})();
