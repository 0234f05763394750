// The rtgate client: one API whichever transport carries it. Login,
// heartbeats, acks, reconnect with jittered backoff, resume from the last
// positions (across reloads when persisted), an outbox for sends made while
// disconnected, token refresh through a callback.

import { Backoff } from "./backoff.js";
import { EarlyCopies } from "./copies.js";
import { DeliveryFilter } from "./dedupe.js";
import { Emitter, type Listener } from "./emitter.js";
import { RtgateError } from "./errors.js";
import { type Link, type LinkHandlers, SseLink, WsLink, WtLink } from "./links.js";
import { TransportMemory } from "./memory.js";
import { newClientMsgId, Outbox, type OutFrame } from "./outbox.js";
import { browserSubscription, type EnablePushOptions } from "./push.js";
import { IndexedDbStore, MemoryStore, type PositionStore, type Positions, PositionTracker, sanitize } from "./positions.js";
import { DeliveredReceipts, receiptFrames } from "./receipts.js";
import type {
  Ack,
  ClientEvents,
  ClientOptions,
  ConnectionState,
  ErrorFrame,
  HistoryReply,
  Id,
  LoginReply,
  Message,
  Outgoing,
  PresenceReply,
  ReadState,
  RoomReply,
  TransportKind,
  Unread,
} from "./types.js";

type Resolved = Required<
  Pick<
    ClientOptions,
    "url" | "transport" | "wtTimeoutMs" | "wtGraceMs" | "wtMemoryMs" | "sendTimeoutMs" | "requestTimeoutMs"
  >
> &
  ClientOptions;

interface Waiter {
  msgType: number;
  /** The room the request names ("" for none): its reply names the same. */
  roomId: string;
  resolve: (m: never) => void;
  reject: (e: RtgateError) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class RtgateClient {
  readonly opts: Resolved;
  state: ConnectionState = "idle";
  transport: TransportKind | null = null;
  /** The WebTransport draft of the current session (null on WebSocket). */
  wtDraft: string | null = null;
  /** The current connection; null between connections. */
  link: Link | null = null;
  /** Rooms joined at every login. */
  get rooms(): Set<string> {
    return this.positions.joined;
  }

  private readonly events = new Emitter<ClientEvents>();
  private readonly outbox: Outbox;
  private readonly positions: PositionTracker;
  private readonly store: PositionStore;
  /** Saved positions are kept per origin and user: `${origin}|`. */
  private readonly storePrefix: string;
  /** The user whose saved positions were loaded, once known. */
  private loadedFor: string | null = null;
  /** A token fetched to learn the user, for the next connection to use. */
  private tokenFetched = false;
  private readonly filter = new DeliveryFilter();
  private readonly backoff: Backoff;
  /** Delays before a send the server could not store (503) goes again. */
  private readonly resendBackoff: Backoff;
  private readonly memory = TransportMemory.local();
  private waiters: Waiter[] = [];
  /** Calls made while disconnected, run after the next login. */
  private afterLogin: (() => void)[] = [];
  private firstLogin: { resolve: (m: LoginReply) => void; reject: (e: Error) => void } | null = null;
  private loaded: Promise<void> | null = null;
  private closedByUser = false;
  /** Counts logins: the outbox writes each frame once per connection. */
  private conn = 0;
  private heartbeatSec = 25;
  private lastInbound = 0;
  private lastErrorCode: number | null = null;
  private refreshing = false;
  private authFailures = 0;
  private hbTimer: ReturnType<typeof setInterval> | undefined;
  private cursorTimer: ReturnType<typeof setTimeout> | undefined;
  private saveTimer: ReturnType<typeof setTimeout> | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly onPageHide = () => void this.savePositions();
  /** Room read positions waiting to be sent, per room. */
  private readonly roomReads = new Map<string, number>();
  private roomReadTimer: ReturnType<typeof setTimeout> | undefined;
  /** Delivered receipts on their way, a moment's worth per frame. */
  private readonly delivered = new DeliveredReceipts((f) => this.sendNow(f));

  constructor(opts: ClientOptions = {}) {
    const origin = typeof location !== "undefined" ? location.origin : "http://127.0.0.1";
    this.opts = {
      url: origin,
      transport: "auto",
      wtTimeoutMs: 3000,
      wtGraceMs: 250,
      wtMemoryMs: 600_000,
      sendTimeoutMs: 30_000,
      requestTimeoutMs: 10_000,
      ...opts,
    } as Resolved;
    this.outbox = new Outbox((pending) => this.events.emit("outbox", { pending }));
    this.positions = new PositionTracker(this.opts.rooms ?? []);
    this.backoff = new Backoff(opts.backoffMs ?? 500, opts.maxBackoffMs ?? 15_000);
    this.resendBackoff = new Backoff(opts.backoffMs ?? 500, opts.maxBackoffMs ?? 15_000);
    const persist = opts.persist ?? true;
    this.store =
      typeof persist === "object"
        ? persist
        : persist && IndexedDbStore.available()
          ? new IndexedDbStore()
          : new MemoryStore();
    this.storePrefix = `${new URL(this.opts.url).origin}|`;
  }

  /** Adds a listener (typed by event name). */
  on<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): this {
    this.events.on(event, fn);
    return this;
  }

  off<K extends keyof ClientEvents>(event: K, fn: Listener<ClientEvents[K]>): this {
    this.events.off(event, fn);
    return this;
  }

  /** Sends waiting for their ack (queued while disconnected, or written and not yet acked). */
  get pendingSends(): number {
    return this.outbox.size;
  }

  /** Connects and logs in; resolves with the first login reply. Reconnects on its own afterwards. */
  async connect(): Promise<LoginReply> {
    this.closedByUser = false;
    await this.loadPositions();
    return new Promise<LoginReply>((resolve, reject) => {
      this.firstLogin = { resolve, reject };
      void this.open();
    });
  }

  /**
   * Closes for good: no reconnect, every pending send and request rejected
   * (code 410), timers stopped, positions saved.
   */
  async close(): Promise<void> {
    this.closedByUser = true;
    this.stopTimers();
    if (typeof removeEventListener !== "undefined") removeEventListener("pagehide", this.onPageHide);
    this.outbox.failAll((id) => new RtgateError(410, "client closed", id));
    this.rejectWaiters(410, "client closed");
    this.afterLogin = [];
    this.link?.close(1000, "bye");
    this.link = null;
    this.setState("closed");
    await this.savePositions();
  }

  /** Sends a business message; resolves with its ack once stored (after a reconnect if need be). */
  send(msg: Outgoing): Promise<Ack | null> {
    const frame = { msgType: 3, ...msg };
    if (frame.volatile) {
      // Volatile: now or never.
      if (this.connected) this.link!.sendVolatile(JSON.stringify(frame));
      return Promise.resolve(null);
    }
    const out = { ...frame, clientMsgId: frame.clientMsgId || newClientMsgId() } as OutFrame;
    const acked = this.outbox.add(out, this.opts.sendTimeoutMs);
    this.flush();
    return acked;
  }

  sendToUser(userId: Id, body: unknown, extra: Outgoing = {}): Promise<Ack | null> {
    return this.send({ receivedUserId: userId, msgBody: body, ...extra });
  }

  sendToRoom(roomId: Id, body: unknown, extra: Outgoing = {}): Promise<Ack | null> {
    return this.send({ roomId, msgBody: body, ...extra });
  }

  /**
   * A volatile "latest value wins" update (typing, cursor, location):
   * receivers drop one older than the newest they have for this sender,
   * destination and `key`.
   */
  sendLatest(dest: { roomId?: Id; receivedUserId?: Id }, key: string, body: unknown): Promise<null> {
    return this.send({ ...dest, msgBody: body, volatile: true, latest: key }) as Promise<null>;
  }

  async join(roomId: Id): Promise<RoomReply> {
    const frame: Record<string, unknown> = { msgType: 5, roomId };
    if (this.opts.presenceEvents) frame.presenceEvents = true;
    const r = await this.request<RoomReply>(frame);
    this.positions.joinedRoom(r.roomId, r.seq);
    this.scheduleSave();
    return r;
  }

  async leave(roomId: Id): Promise<RoomReply> {
    this.positions.leftRoom(String(roomId));
    this.scheduleSave();
    return this.request<RoomReply>({ msgType: 6, roomId });
  }

  history(roomId: Id, since = 0, limit = 50): Promise<HistoryReply> {
    return this.request<HistoryReply>({ msgType: 7, roomId, since, limit });
  }

  presence(roomId: Id): Promise<PresenceReply> {
    return this.request<PresenceReply>({ msgType: 8, roomId });
  }

  // --- chat: receipts, read state, amendments, typing -------------------

  /** "I have read these direct messages" (their senders get a receipt). */
  markRead(msgIds: string[]): void {
    for (const f of receiptFrames("read", msgIds)) this.sendNow(f);
  }

  /**
   * "I have read this room up to `seq`" (its members are told). Sent at
   * most twice a second per room, the furthest position: a busy room read
   * message by message costs the server one receipt per half second.
   */
  markRoomRead(roomId: Id, seq: number): void {
    const room = String(roomId);
    this.roomReads.set(room, Math.max(seq, this.roomReads.get(room) ?? 0));
    if (this.roomReadTimer !== undefined) return;
    this.roomReadTimer = setTimeout(() => {
      this.roomReadTimer = undefined;
      for (const [r, s] of this.roomReads) this.sendNow({ msgType: 12, kind: "read", roomId: r, seq: s });
      this.roomReads.clear();
    }, 500);
  }

  /** "These direct messages reached me" (done by itself unless `autoDelivered: false`). */
  markDelivered(msgIds: string[]): void {
    for (const f of receiptFrames("delivered", msgIds)) this.sendNow(f);
  }

  /** Unread counts of the inbox and every room joined or read. */
  async unread(): Promise<Unread> {
    const r = await this.request<{ unread: Unread }>({ msgType: 13 });
    return r.unread;
  }

  /** Members' read positions in a room (paged by `after`), and our unread count there. */
  readState(roomId: Id, opts: { after?: string; limit?: number } = {}): Promise<ReadState> {
    return this.request<ReadState>({ msgType: 13, roomId, ...opts });
  }

  /** Replaces the body of one of our messages; resolves with the amendment's ack. */
  edit(msgId: string, body: unknown): Promise<Ack | null> {
    return this.sendStored({ msgType: 14, msgId, op: "edit", msgBody: body });
  }

  /** Deletes one of our messages (its body leaves the server's store). */
  delete(msgId: string): Promise<Ack | null> {
    return this.sendStored({ msgType: 14, msgId, op: "delete" });
  }

  /** Adds (or with `on = false` takes back) a reaction. */
  react(msgId: string, reaction: string, on = true): Promise<Ack | null> {
    return this.sendStored({ msgType: 14, msgId, op: on ? "react" : "unreact", reaction });
  }

  /** Tells a room or a user that we are typing (volatile; the server passes one a second). */
  typing(dest: { roomId?: Id; receivedUserId?: Id }, typing = true): void {
    if (this.connected) this.link!.sendVolatile(JSON.stringify({ msgType: 15, ...dest, typing }));
  }

  /**
   * Push while the page is closed: asks the user's permission, subscribes
   * the browser with the server's VAPID key and registers the subscription
   * (msgType 16). The server then pushes when a direct message reaches no
   * session of ours; `/push-sw.js` (or the app's own worker) shows it.
   */
  async enablePush(opts: EnablePushOptions = {}): Promise<PushSubscriptionJSON> {
    const sub = await browserSubscription(this.opts.url, opts);
    await this.request({ msgType: 16, push: sub });
    return sub;
  }

  /** Stops push to this browser: unregistered at the server, then unsubscribed. */
  async disablePush(opts: EnablePushOptions = {}): Promise<void> {
    // The page's registration, if any: none is made to be turned off.
    const reg =
      opts.registration ??
      (typeof navigator !== "undefined" && "serviceWorker" in navigator
        ? await navigator.serviceWorker.getRegistration()
        : undefined);
    if (!reg) return;
    const sub = await reg.pushManager.getSubscription();
    if (!sub) return;
    await this.request({ msgType: 16, push: { endpoint: sub.endpoint }, remove: true });
    await sub.unsubscribe();
  }

  /**
   * Registers a native app's device token (APNs or FCM, from a shell such
   * as Capacitor or React Native), or removes it.
   */
  async registerDevice(device: { apns: string } | { fcm: string }, remove = false): Promise<void> {
    await this.request({ msgType: 16, ...device, ...(remove ? { remove: true } : {}) });
  }

  /** A frame through the outbox: acked like a message, resent after a reconnect. */
  private sendStored(frame: Record<string, unknown>): Promise<Ack | null> {
    const out = { ...frame, clientMsgId: newClientMsgId() } as OutFrame;
    const acked = this.outbox.add(out, this.opts.sendTimeoutMs);
    this.flush();
    return acked;
  }

  /** A frame now, or after the next login. */
  private sendNow(frame: Record<string, unknown>): void {
    const write = () => this.link!.send(JSON.stringify(frame));
    if (this.connected) write();
    else if (!this.closedByUser) this.afterLogin.push(write);
  }

  /** Datagram copies ahead of their channel, held until it catches up. */
  private readonly early = new EarlyCopies((m) => this.positions.positionOf(m));

  /** Delivers a message to the page unless it is a duplicate or a stale
   * "latest" update; a datagram copy ahead of its channel waits. */
  onMessage(m: Message, datagram = false): void {
    const deliver = (x: Message) => this.deliver(x);
    if (datagram && m.seq !== undefined) {
      if (m.msgId && this.early.has(m.msgId)) return;
      if (this.early.hold({ ...m, via: "datagram" }, deliver)) return;
      m.via = "datagram";
    } else if (m.msgId && this.early.has(m.msgId)) {
      // Its stream copy: what came before it on the stream has come.
      this.deliver(this.early.take(m.msgId)!);
      this.early.release(deliver);
      return;
    } else if (this.transport === "webtransport" && m.seq !== undefined) {
      m.via = "stream";
    }
    this.deliver(m);
    if (this.early.size > 0) this.early.release(deliver);
  }

  private deliver(m: Message): void {
    const verdict = this.filter.check(m);
    if (verdict === "duplicate") return;
    if (verdict === "stale") return this.events.emit("stale", m);
    // A room read notice's seq is the reader's position, not the room's.
    const notice = m.volatile === true;
    if (!notice && this.positions.observe(m)) {
      if (m.receivedUserId !== undefined) this.scheduleCursor();
      this.scheduleSave();
    }
    switch (m.msgType) {
      case 12:
        return this.events.emit("receipt", m as never);
      case 14:
        return this.events.emit("amended", m as never);
      case 15:
        return this.events.emit("typing", m as never);
    }
    const me = this.positions.user;
    if (
      this.opts.autoDelivered !== false &&
      m.seq !== undefined &&
      m.msgId &&
      m.receivedUserId !== undefined &&
      String(m.receivedUserId) === me &&
      String(m.sendUserId) !== me
    ) {
      this.delivered.add(m.msgId);
    }
    this.events.emit("message", m);
  }

  // --- connection -------------------------------------------------------

  private get connected(): boolean {
    return this.state === "connected" && this.link !== null && this.link.open;
  }

  private setState(state: ConnectionState, detail?: string): void {
    this.state = state;
    const link = this.link;
    this.events.emit("state", {
      state,
      detail,
      transport: this.transport,
      wtDraft: this.wtDraft,
      datagrams: link ? link.datagrams : false,
    });
  }

  /** The user a login will be, when it is known before the server says
   * (`userId`, or the token's subject); not with cookies alone. */
  private expectedUser(): string | undefined {
    return this.opts.userId ?? tokenSubject(this.opts.token);
  }

  /** Loads the positions saved for `user` (once per user), so that the
   * login resumes with them. Another user's positions are never loaded:
   * on a shared browser they would skip this user's messages. */
  private async loadPositionsOf(user: string): Promise<Positions | null> {
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

  private loadPositions(): Promise<void> {
    this.loaded ??= (async () => {
      if (typeof addEventListener !== "undefined") addEventListener("pagehide", this.onPageHide);
      // A token from getToken names its user (its subject) before the
      // login; the first connection then uses that token.
      if (this.opts.userId === undefined && this.opts.getToken && this.opts.token === undefined) {
        await this.freshToken();
        this.tokenFetched = true;
      }
      const user = this.expectedUser();
      if (user !== undefined) await this.loadPositionsOf(user);
    })();
    return this.loaded;
  }

  /** After a login whose user was not known before it (cookies): that
   * user's saved positions are loaded now, and what its joined rooms got
   * since is fetched with history, as a `since` would have replayed it. */
  private async catchUp(user: string): Promise<void> {
    const inbox = this.positions.inbox;
    const saved = await this.loadPositionsOf(user);
    if (!saved) return;
    // The server replayed the inbox from its cursor: never step back.
    if (inbox !== null && (this.positions.inbox === null || this.positions.inbox < inbox)) {
      this.positions.inbox = inbox;
    }
    for (const [room, from] of Object.entries(saved.rooms)) {
      if (!this.positions.joined.has(room)) continue;
      let since = from;
      for (let page = 0; page < 100; page++) {
        let h: HistoryReply;
        try {
          h = await this.history(room, since, 100);
        } catch {
          break;
        }
        for (const m of h.messages ?? []) this.onMessage(m);
        const last = h.messages?.[h.messages.length - 1]?.seq;
        if (last === undefined || (h.messages?.length ?? 0) < 100) break;
        since = last;
      }
    }
  }

  private async freshToken(): Promise<void> {
    if (!this.opts.getToken) return;
    try {
      this.opts.token = await this.opts.getToken();
    } catch (e) {
      this.events.emit("error", { msgType: 9, code: 0, reason: `getToken: ${e}` });
    }
  }

  /** Answers the server's "credentials expire soon" with new ones (msgType 10). */
  private async refresh(): Promise<void> {
    if (this.refreshing || !this.opts.getToken || !this.link?.open) return;
    this.refreshing = true;
    await this.freshToken();
    if (this.link?.open) this.link.send(JSON.stringify({ msgType: 10, token: this.opts.token }));
  }

  private async open(): Promise<void> {
    this.reconnectTimer = undefined;
    if (this.closedByUser) return;
    this.setState("connecting");
    if (this.tokenFetched) this.tokenFetched = false;
    else await this.freshToken();
    const link = await this.openLink();
    if (!link || !link.open || this.closedByUser) return; // onClose decides what next
    this.link = link;
    this.lastErrorCode = null;
    this.transport = link.kind;
    this.lastInbound = Date.now();
    this.setState("logging-in");
    const login: Record<string, unknown> = { msgType: 2, rooms: [...this.positions.joined] };
    if (this.opts.userId !== undefined) login.sendUserId = this.opts.userId;
    if (this.opts.token) login.token = this.opts.token;
    if (this.opts.presenceEvents) login.presenceEvents = true;
    if (link.kind === "webtransport" && (this.opts.redundancy ?? "auto") !== "off") {
      login.redundancy = this.opts.redundancy ?? "auto";
    }
    // Resume: replay what arrived while we were away (or before a reload).
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
  private async openLink(): Promise<Link | null> {
    const o = this.opts;
    const mode = o.transport;
    if (mode === "sse") return this.choose(await this.openSse());
    const canWt = mode !== "websocket" && typeof WebTransport !== "undefined";
    if (!canWt) return this.choose((await this.openWs()) ?? (await this.fallBack(mode)));
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
    if (memory === "sse") {
      this.events.emit("fallback", "only the HTTP fallback worked here recently");
      return this.choose(await this.openSse());
    }
    if (memory === "websocket") {
      this.events.emit("fallback", "it failed here recently");
      return this.choose((await this.openWs()) ?? (await this.fallBack(mode)));
    }
    const wtP: Promise<WtLink | null> = WtLink.open(o, o.wtTimeoutMs, this.handlers()).then(
      (link) => {
        this.memory.set(o.url, "webtransport", o.wtMemoryMs);
        return link;
      },
      (e) => {
        this.memory.set(o.url, "websocket", o.wtMemoryMs);
        this.events.emit("fallback", errorText(e));
        return null;
      },
    );
    const wsP = this.openWs();
    // WebTransport, unless the WebSocket is up and the grace has passed
    // (undefined); a failed WebSocket leaves it to WebTransport.
    const grace = memory === "webtransport" ? 4 * o.wtGraceMs : o.wtGraceMs;
    const wt = await Promise.race([
      wtP,
      wsP.then((ws) => (ws ? new Promise<undefined>((r) => setTimeout(() => r(undefined), grace)) : wtP)),
    ]);
    if (wt) {
      void wsP.then((ws) => ws?.close(1000, "webtransport preferred"));
      return this.choose(wt);
    }
    void wtP.then((late) => late?.close(1000, "websocket chosen"));
    const ws = (await wsP) ?? (await this.fallBack(mode));
    if (!ws) {
      this.onClose(1006, "no transport connected");
      return null;
    }
    return this.choose(ws);
  }

  /** Neither WebTransport nor WebSocket: Server-Sent Events and POSTs, remembered. */
  private async fallBack(mode: ClientOptions["transport"]): Promise<SseLink | null> {
    if (mode === "websocket" || typeof EventSource === "undefined") return null;
    const link = await this.openSse();
    if (link) {
      this.events.emit("fallback", "no WebSocket either: using the HTTP fallback");
      this.memory.set(this.opts.url, "sse", this.opts.wtMemoryMs);
    }
    return link;
  }

  private async openSse(): Promise<SseLink | null> {
    const link = await SseLink.open(this.opts, this.handlers());
    return link.open ? link : null;
  }

  private async openWs(): Promise<WsLink | null> {
    const link = await WsLink.open(this.opts, this.handlers());
    return link.open ? link : null;
  }

  /** Handlers for one link: its frames and close reach the client only while it is the chosen link. */
  private handlers(): LinkHandlers {
    const h: LinkHandlers = {
      link: null,
      onmessage: (text, datagram) => {
        if (this.link === h.link) this.onFrame(text, datagram === true);
      },
      onclose: (code, reason) => {
        if (this.link === h.link) this.onClose(code, reason);
      },
      ondatagramsoff: (reason) => {
        if (this.link === h.link && this.state === "connected") this.setState("connected", reason);
      },
    };
    return h;
  }

  private choose(link: Link | null): Link | null {
    if (!link) {
      this.onClose(1006, "no transport connected");
      return null;
    }
    if (this.closedByUser) {
      link.close(1000, "bye");
      return null;
    }
    this.link = link;
    return link;
  }

  private onClose(code: number, reason: string): void {
    clearInterval(this.hbTimer);
    this.rejectWaiters(code, `connection closed (${code})`);
    if (this.closedByUser) return;
    // 4401 with a token source: the token expired or was revoked; fetch a
    // fresh one and come back (twice in a row means it is not the token's age).
    if (code === 4401 && this.opts.getToken && this.authFailures < 2) {
      this.authFailures += 1;
      this.setState("reconnecting", "credentials expired; fetching a fresh token");
      this.reconnectTimer = setTimeout(() => void this.open(), 100 + Math.random() * 400);
      return;
    }
    // 4401/4403 (over WebTransport: error 401/403 during login): retrying cannot help.
    const refused =
      code === 4401 || code === 4403
        ? `${code} ${reason}`
        : this.state === "logging-in" && (this.lastErrorCode === 401 || this.lastErrorCode === 403)
          ? `${this.lastErrorCode}`
          : null;
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

  private onFrame(data: string, datagram = false): void {
    this.lastInbound = Date.now();
    if (data === "pong") return;
    let m: Record<string, any>;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    switch (m.msgType) {
      case 1:
        return;
      case 2:
        return this.onLogin(m as LoginReply);
      case 4:
        this.resendBackoff.reset();
        this.outbox.settle(m.clientMsgId, m as Ack);
        return;
      case 9:
        return this.onError(m as ErrorFrame);
      case 10:
        // The server's notice that the token expires at m.exp, or the answer to our refresh.
        if (this.refreshing) {
          this.refreshing = false;
          return this.events.emit("refreshed", m as never);
        }
        this.events.emit("expiring", m as never);
        void this.refresh();
        return;
      case 11:
        return this.events.emit("presence", m as never);
      case 5:
      case 6:
      case 7:
      case 8:
      case 13:
      case 16:
        // A leave we did not ask for: a refreshed token or the backend took the room away.
        if (m.msgType === 6 && this.waiterFor(m) < 0) {
          this.positions.leftRoom(m.roomId);
          this.scheduleSave();
          return this.events.emit("left", m as RoomReply);
        }
        if (m.msgType === 5 && this.waiterFor(m) < 0) {
          // Joined by the server (control API, connect hook): follow the room from here.
          this.positions.joinedRoom(m.roomId, m.seq);
          this.scheduleSave();
        }
        return this.wake(m.msgType, m);
      default:
        return this.onMessage(m as Message, datagram);
    }
  }

  private onLogin(m: LoginReply): void {
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
    this.hbTimer = setInterval(() => this.heartbeat(), this.heartbeatSec * 1000);
    this.wtDraft = m.wtDraft ?? null;
    const link = this.link;
    const viaStream =
      link && link.kind === "webtransport" && !link.datagrams
        ? "; no datagrams here: volatile messages travel on the stream"
        : "";
    this.setState("connected", `${m.sendUserId} on ${m.nodeId}${viaStream}`);
    this.events.emit("login", m);
    this.firstLogin?.resolve(m);
    this.firstLogin = null;
    const deferred = this.afterLogin;
    this.afterLogin = [];
    for (const run of deferred) run();
    this.flush();
  }

  private onError(m: ErrorFrame): void {
    this.lastErrorCode = m.code;
    if (m.clientMsgId && this.outbox.has(m.clientMsgId)) {
      // 503: the store could not take it; the protocol says resend it with
      // the same clientMsgId. After a jittered, growing delay (reset by the
      // next ack), so a fleet does not hammer a node that is recovering.
      if (m.code === 503 && this.outbox.retry(m.clientMsgId)) {
        if (this.retryTimer === undefined) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
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
  private flush(): void {
    if (!this.connected) return;
    for (const frame of this.outbox.due(this.conn)) this.link!.send(JSON.stringify(frame));
  }

  /** Tells the server, at most once a second, how far we hold our inbox. */
  private scheduleCursor(): void {
    if (this.cursorTimer) return;
    this.cursorTimer = setTimeout(() => {
      this.cursorTimer = undefined;
      if (this.connected && this.positions.inbox !== null) {
        this.link!.send(JSON.stringify({ msgType: 4, seq: this.positions.inbox }));
      }
    }, 1000);
  }

  private scheduleSave(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => void this.savePositions(), 200);
  }

  private async savePositions(): Promise<void> {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    try {
      const user = this.positions.user;
      if (user !== null) await this.store.save(this.storePrefix + user, this.positions.snapshot());
    } catch (e) {
      this.events.emit("error", { msgType: 9, code: 0, reason: `positions not saved: ${e}` });
    }
  }

  private heartbeat(): void {
    if (!this.link?.open) return;
    // Three silent heartbeat periods: the link is dead even if it says open.
    if (Date.now() - this.lastInbound > 3 * this.heartbeatSec * 1000) {
      this.link.close(4408, "heartbeat timeout");
      return;
    }
    this.link.send(JSON.stringify({ msgType: 1 }));
  }

  /**
   * A request answered by a reply of the same msgType and room (or an
   * error); waits for a login when offline.
   */
  private request<T>(frame: Record<string, unknown>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timeoutMs = this.opts.requestTimeoutMs;
      const w: Waiter = {
        msgType: frame.msgType as number,
        roomId: roomKey(frame.roomId),
        resolve: resolve as (m: never) => void,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          this.afterLogin = this.afterLogin.filter((x) => x !== write);
          reject(new RtgateError(408, `no answer within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      const write = () => {
        this.waiters.push(w);
        this.link!.send(JSON.stringify(frame));
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
  private waiterFor(m: Record<string, any>): number {
    if (m.msgType === 9) return this.waiters.length > 0 ? 0 : -1;
    const room = roomKey(m.roomId);
    return this.waiters.findIndex((w) => w.msgType === m.msgType && w.roomId === room);
  }

  private wake(msgType: number, m: Record<string, any>): void {
    const i = this.waiterFor(m);
    if (i < 0) return;
    const [w] = this.waiters.splice(i, 1);
    clearTimeout(w.timer);
    if (msgType === 9 && w.msgType !== 9) w.reject(new RtgateError(m.code, m.reason));
    else w.resolve(m as never);
  }

  private rejectWaiters(code: number, reason: string): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(new RtgateError(code, reason));
    }
  }

  private stopTimers(): void {
    // Gathered receipts go now, or after the next login.
    this.delivered.flush();
    clearTimeout(this.roomReadTimer);
    this.roomReadTimer = undefined;
    for (const [r, s] of this.roomReads) this.sendNow({ msgType: 12, kind: "read", roomId: r, seq: s });
    this.roomReads.clear();
    clearInterval(this.hbTimer);
    for (const t of [this.cursorTimer, this.reconnectTimer, this.retryTimer]) clearTimeout(t);
    this.cursorTimer = this.reconnectTimer = this.retryTimer = undefined;
  }
}

function errorText(e: unknown): string {
  return String((e as Error)?.message ?? e);
}

/** The `sub` of a JWT, read without verifying (only to key this user's saved positions). */
export function tokenSubject(token: string | undefined): string | undefined {
  if (!token) return undefined;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const sub = JSON.parse(atob(part)).sub;
    return sub === undefined ? undefined : String(sub);
  } catch {
    return undefined;
  }
}

/** A room id as requests and replies are matched by ("" for none; 7 and "7" alike). */
function roomKey(roomId: unknown): string {
  return roomId === undefined || roomId === null ? "" : String(roomId);
}
