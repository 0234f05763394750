// The client's state machine against a scripted WebSocket: login, resume,
// outbox, requests while offline, refusal and teardown. (The real server
// and browsers are in the Rust suite: tests/e2e/browser/package.rs.)

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";
import { RtgateClient } from "../src/client.js";
import type { RtgateError } from "../src/errors.js";
import { MemoryStore } from "../src/positions.js";
import { base64UrlBytes } from "../src/push.js";
import { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";

/** A WebSocket whose server side the test plays. */
class FakeWebSocket {
  static readonly OPEN = 1;
  static all: FakeWebSocket[] = [];
  readyState = 0;
  sent: Record<string, any>[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;

  binaryType = "blob";
  /** Frames sent as binary (MessagePack), in order. */
  packed = 0;

  constructor(
    readonly url: string,
    readonly protocols?: string[],
  ) {
    FakeWebSocket.all.push(this);
    setTimeout(() => {
      this.readyState = 1;
      this.onopen?.();
    }, 1);
  }
  send(data: string | Uint8Array) {
    if (typeof data === "string") {
      this.sent.push(data === "ping" ? { literal: "ping" } : JSON.parse(data));
      return;
    }
    this.packed += 1;
    this.sent.push(msgpackDecode(data) as Record<string, any>);
  }
  /** The server's frame, packed. */
  replyPacked(frame: object) {
    const bytes = msgpackEncode(frame);
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as never });
  }
  close(code: number, reason: string) {
    this.drop(code, reason);
  }
  /** The server's frame. */
  reply(frame: object) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  /** The connection ends. */
  drop(code = 1006, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}
(globalThis as any).WebSocket = FakeWebSocket;

const login = (inboxSeq = 0) => ({
  msgType: 2,
  sendUserId: "alice",
  sessionId: "s",
  nodeId: "n",
  heartbeatSec: 25,
  inboxSeq,
});

/** Waits until `cond` holds (the client works through timers and promises). */
async function until(cond: () => unknown, what: string): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function socket(n: number): Promise<FakeWebSocket> {
  await until(() => FakeWebSocket.all[n]?.sent.length, `connection ${n} to log in`);
  return FakeWebSocket.all[n];
}

const clients: RtgateClient[] = [];
function client(extra = {}): RtgateClient {
  const c = new RtgateClient({ url: "http://chat.test", userId: "alice", transport: "websocket", persist: false, backoffMs: 5, ...extra });
  clients.push(c);
  return c;
}

afterEach(async () => {
  // Teardown stops every timer: a leftover one would keep this process alive.
  for (const c of clients.splice(0)) await c.close();
  FakeWebSocket.all = [];
});

test("a send made while disconnected goes out after the next login and settles with its ack", async () => {
  // (Delivered receipts are tested in chat.test.ts.)
  const c = client({ autoDelivered: false });
  const first = c.connect();
  const ws1 = await socket(0);
  assert.deepEqual(ws1.sent[0], { msgType: 2, rooms: [], sendUserId: "alice" });
  ws1.reply(login(5));
  assert.equal((await first).inboxSeq, 5);
  ws1.reply({ msgType: 3, msgId: "m6", sendUserId: "bob", receivedUserId: "alice", seq: 6, msgBody: "hi" });

  ws1.drop();
  const sent = c.sendToUser("bob", "while away");
  assert.equal(c.pendingSends, 1);
  const ws2 = await socket(1);
  assert.deepEqual(ws2.sent, [{ msgType: 2, rooms: [], sendUserId: "alice", since: { inbox: 6, rooms: {} } }], "nothing before the login reply");
  ws2.reply(login(6));
  await until(() => ws2.sent.length === 2, "the queued send");
  const out: Record<string, any> = FakeWebSocket.all[1].sent[1];
  assert.equal(out.msgType, 3);
  assert.equal(out.receivedUserId, "bob");
  assert.equal(out.msgBody, "while away");
  ws2.reply({ msgType: 4, clientMsgId: out.clientMsgId, msgId: "m7", seq: 1 });
  assert.deepEqual(await sent, { msgType: 4, clientMsgId: out.clientMsgId, msgId: "m7", seq: 1 });
  assert.equal(c.pendingSends, 0);
});

test("a send written but not acked when the link dropped is written again with the same clientMsgId", async () => {
  const c = client();
  const first = c.connect();
  const ws1 = await socket(0);
  ws1.reply(login());
  await first;
  const sent = c.sendToRoom("lobby", "once");
  const id = ws1.sent[1].clientMsgId;
  ws1.drop();
  const ws2 = await socket(1);
  ws2.reply(login());
  await until(() => ws2.sent.length === 2, "the resend");
  assert.equal(ws2.sent[1].clientMsgId, id);
  // The server dedupes and acks the first copy.
  ws2.reply({ msgType: 4, clientMsgId: id, msgId: "m1", seq: 1 });
  assert.equal((await sent)?.msgId, "m1");
});

test("join, history and presence made while offline wait for the login; rooms come back with since", async () => {
  const c = client({ rooms: ["a"] });
  const first = c.connect();
  const ws1 = await socket(0);
  ws1.reply(login());
  await first;
  ws1.reply({ msgType: 3, msgId: "r1", sendUserId: "bob", roomId: "a", seq: 3 });
  ws1.drop();
  const joined = c.join("b");
  const ws2 = await socket(1);
  assert.deepEqual(ws2.sent[0].rooms, ["a"]);
  assert.deepEqual(ws2.sent[0].since, { inbox: 0, rooms: { a: 3 } });
  ws2.reply(login());
  await until(() => ws2.sent.length === 2, "the join");
  assert.deepEqual(ws2.sent[1], { msgType: 5, roomId: "b" });
  ws2.reply({ msgType: 5, roomId: "b", seq: 10 });
  assert.equal((await joined).seq, 10);
  ws2.drop();
  const ws3 = await socket(2);
  assert.deepEqual(ws3.sent[0].rooms, ["a", "b"]);
  assert.deepEqual(ws3.sent[0].since.rooms, { a: 3, b: 10 });
});

test("a refused login rejects the first connect and every queued send; no retry follows", async () => {
  const c = client();
  const first = c.connect();
  const queued = c.sendToUser("bob", "x");
  const ws1 = await socket(0);
  ws1.drop(4403, "sendUserId is not the token's subject");
  await assert.rejects(first, /login refused: 4403/);
  await assert.rejects(queued, (e: RtgateError) => e.code === 4403);
  assert.equal(c.state, "refused");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(FakeWebSocket.all.length, 1);
});

test("an error for a send rejects it with the server's code; 503 is sent again", async () => {
  const c = client();
  const first = c.connect();
  const ws1 = await socket(0);
  ws1.reply(login());
  await first;
  const refused = c.sendToRoom("nope", "x");
  const busy = c.sendToRoom("lobby", "y");
  const [r, b] = [ws1.sent[1], ws1.sent[2]];
  ws1.reply({ msgType: 9, code: 403, reason: "roomId: not joined", clientMsgId: r.clientMsgId });
  await assert.rejects(refused, (e: RtgateError) => e.code === 403 && e.message === "roomId: not joined");
  ws1.reply({ msgType: 9, code: 503, reason: "store unavailable", clientMsgId: b.clientMsgId });
  await until(() => ws1.sent.length === 4, "the resend after 503");
  assert.equal(ws1.sent[3].clientMsgId, b.clientMsgId);
  ws1.reply({ msgType: 4, clientMsgId: b.clientMsgId, msgId: "m", seq: 1 });
  assert.equal((await busy)?.seq, 1);
});

test("a send refused 503 goes again after a jittered delay that grows until an ack", async () => {
  const delays: number[] = [];
  const c = client({ backoffMs: 40, maxBackoffMs: 10_000 });
  const first = c.connect();
  const ws1 = await socket(0);
  ws1.reply(login());
  await first;
  const sent = c.sendToRoom("lobby", "y");
  const id = ws1.sent[1].clientMsgId;
  for (let i = 0; i < 3; i++) {
    const before = ws1.sent.length;
    const t = Date.now();
    ws1.reply({ msgType: 9, code: 503, reason: "store unavailable", clientMsgId: id });
    await until(() => ws1.sent.length > before, `resend ${i + 1}`);
    delays.push(Date.now() - t);
  }
  // Jittered from the configured base (40 ms, then up to 80 and 160), not a
  // fixed second.
  assert.ok(delays[0] <= 300, `first resend after ${delays[0]} ms`);
  assert.ok(delays.every((d) => d < 900), `resends after ${delays} ms`);
  ws1.reply({ msgType: 4, clientMsgId: id, msgId: "m", seq: 1 });
  assert.equal((await sent)?.seq, 1);
});

test("on a shared browser, another user's saved positions and rooms are never sent (cookie auth)", async () => {
  const store = new MemoryStore();
  // Alice used this browser: her positions, under her name.
  await store.save("http://chat.test|alice", { user: "alice", inbox: 57, rooms: { "salary-talk": 9 }, joined: ["salary-talk"] });
  // The same key the client used to share between users (no userId, no token).
  await store.save("http://chat.test|-", { user: "alice", inbox: 57, rooms: { "salary-talk": 9 }, joined: ["salary-talk"] });
  const c = client({ userId: undefined, persist: store, rooms: ["lobby"] });
  const first = c.connect();
  const ws1 = await socket(0);
  const loginFrame = ws1.sent[0];
  assert.equal(loginFrame.since, undefined, "no since of anyone's");
  assert.deepEqual(loginFrame.rooms, ["lobby"], "no room of alice's");
  ws1.reply({ ...login(3), sendUserId: "bob" });
  await first;
  // Saved under his own name (the client saves a moment after a login).
  let bob = null;
  for (let i = 0; i < 200 && bob === null; i++) {
    await new Promise((r) => setTimeout(r, 10));
    bob = await store.load("http://chat.test|bob");
  }
  assert.equal(bob!.user, "bob");
  assert.equal(bob!.inbox, 3);
  assert.deepEqual(bob!.rooms, {});
  assert.ok(!ws1.sent.some((f) => f.msgType === 7), "nothing of alice's fetched");
});

test("with getToken, the token's subject picks the saved positions, and the first connection uses that token", async () => {
  const store = new MemoryStore();
  await store.save("http://chat.test|alice", { user: "alice", inbox: 5, rooms: {}, joined: [] });
  const payload = Buffer.from(JSON.stringify({ sub: "alice", exp: 9999999999 })).toString("base64url");
  const jwt = `e30.${payload}.sig`;
  let calls = 0;
  const c = client({ userId: undefined, persist: store, getToken: async () => (calls++, jwt) });
  const first = c.connect();
  const ws1 = await socket(0);
  assert.deepEqual(ws1.sent[0].since, { inbox: 5, rooms: {} });
  assert.equal(ws1.sent[0].token, jwt);
  assert.equal(calls, 1, "one token for the first connection");
  ws1.reply(login(5));
  await first;
});

test("with cookie auth, a reload catches its rooms up with history once the login names the user", async () => {
  const store = new MemoryStore();
  await store.save("http://chat.test|alice", { user: "alice", inbox: 5, rooms: { lobby: 3 }, joined: ["lobby"] });
  const c = client({ userId: undefined, persist: store, rooms: ["lobby"] });
  const got: number[] = [];
  c.on("message", (m) => got.push(m.seq!));
  const first = c.connect();
  const ws1 = await socket(0);
  assert.equal(ws1.sent[0].since, undefined);
  ws1.reply({ ...login(6), sendUserId: "alice" });
  await first;
  await until(() => ws1.sent.some((f) => f.msgType === 7), "a history request");
  const h = ws1.sent.find((f) => f.msgType === 7)!;
  assert.deepEqual([h.roomId, h.since], ["lobby", 3]);
  ws1.reply({ msgType: 7, roomId: "lobby", seq: 4, messages: [{ msgType: 3, roomId: "lobby", sendUserId: "x", msgId: "m4", seq: 4, ts: 1 }] });
  await until(() => got.length === 1, "the missed room message");
  assert.deepEqual(got, [4]);
});

test("close rejects pending sends and requests with 410, and nothing reconnects", async () => {
  const c = client({ sendTimeoutMs: 60_000 });
  const first = c.connect();
  const ws1 = await socket(0);
  ws1.reply(login());
  await first;
  const pending = c.sendToUser("bob", "never acked");
  const who = c.presence("lobby");
  const states: string[] = [];
  c.on("state", (s) => states.push(s.state));
  await c.close();
  await assert.rejects(pending, (e: RtgateError) => e.code === 410);
  await assert.rejects(who, (e: RtgateError) => e.code === 410);
  assert.deepEqual(states, ["closed"]);
  await assert.rejects(c.join("x"), (e: RtgateError) => e.code === 410);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(FakeWebSocket.all.length, 1);
});

test("events are typed and delivered once; presence events have their own", async () => {
  const c = client();
  const got: string[] = [];
  c.on("message", (m) => got.push(`message ${m.msgId}`));
  c.on("presence", (p) => got.push(`presence ${p.userId} ${p.event}`));
  c.on("outbox", (o) => got.push(`outbox ${o.pending}`));
  const first = c.connect();
  const ws1 = await socket(0);
  ws1.reply(login());
  await first;
  ws1.reply({ msgType: 3, msgId: "x1", roomId: "r", seq: 1 });
  ws1.reply({ msgType: 3, msgId: "x1", roomId: "r", seq: 1 });
  ws1.reply({ msgType: 11, roomId: "r", userId: "bob", event: "join" });
  void c.sendToRoom("r", "y").catch(() => {});
  assert.deepEqual(got, ["message x1", "presence bob join", "outbox 1"]);
});

test("replies are matched to requests by room: a join by the server or another room's answer resolves nothing of ours", async () => {
  const c = client();
  const first = c.connect();
  const ws = await socket(0);
  ws.reply(login());
  await first;
  const joined = c.join("b");
  const ha = c.history("a");
  const hb = c.history("b");
  await until(() => ws.sent.length === 4, "the three requests");
  // The backend joins the session to x (control API) while our join waits.
  ws.reply({ msgType: 5, roomId: "x", seq: 1 });
  ws.reply({ msgType: 5, roomId: "b", seq: 10 });
  const j = await joined;
  assert.equal(j.roomId, "b");
  assert.equal(j.seq, 10);
  // Histories answered in the other order still find their own request.
  ws.reply({ msgType: 7, roomId: "b", seq: 4, messages: [] });
  ws.reply({ msgType: 7, roomId: "a", seq: 2, messages: [] });
  assert.equal((await ha).seq, 2);
  assert.equal((await hb).seq, 4);
  // The room the server joined us to is followed: the next login asks for it.
  ws.drop();
  const ws2 = await socket(1);
  assert.deepEqual([...ws2.sent[0].rooms].sort(), ["b", "x"]);
});

test("a datagram copy ahead of its channel waits for its predecessor or its own stream copy", async () => {
  const c = client();
  const got: string[] = [];
  c.on("message", (m) => got.push(`${m.msgId} ${m.via ?? ""}`.trim()));
  const done = c.connect();
  (await socket(0)).reply(login(10));
  await done;
  const dm = (seq: number, msgId: string) => ({ msgType: 3, receivedUserId: "alice", seq, msgId });
  // 12 outruns 11 by datagram: it waits, then both go, in order.
  c.onMessage(dm(12, "b"), true);
  assert.deepEqual(got, []);
  c.onMessage(dm(11, "a"), false);
  c.onMessage(dm(12, "b"), false);
  assert.deepEqual(got, ["a", "b datagram"], "in seq order, the second copy dropped");
  // 14 by datagram with 13 never coming to this session: its own stream
  // copy lets it go (the stream is in order).
  c.onMessage(dm(14, "d"), true);
  assert.equal(got.length, 2);
  c.onMessage(dm(14, "d"), false);
  assert.deepEqual(got.slice(2), ["d datagram"]);
  // A datagram copy that is next goes at once; its stream copy is a duplicate.
  c.onMessage(dm(15, "e"), true);
  c.onMessage(dm(15, "e"), false);
  assert.deepEqual(got.slice(3), ["e datagram"]);
});

// --- chat: receipts, read state, amendments, typing ----------------------

test("direct messages from others are receipted as delivered, a moment's worth per frame", async () => {
  const c = client();
  const done = c.connect();
  const ws = await socket(0);
  ws.reply(login());
  await done;
  ws.reply({ msgType: 3, msgId: "m1", sendUserId: "bob", receivedUserId: "alice", seq: 1 });
  ws.reply({ msgType: 3, msgId: "m2", sendUserId: "bob", receivedUserId: "alice", seq: 2 });
  // Not receipted: our own copy, a room message.
  ws.reply({ msgType: 3, msgId: "own", sendUserId: "alice", receivedUserId: "carol" });
  ws.reply({ msgType: 3, msgId: "r1", sendUserId: "bob", roomId: "lobby", seq: 1 });
  await until(() => ws.sent.some((f) => f.msgType === 12), "the receipt");
  const receipts = ws.sent.filter((f) => f.msgType === 12);
  assert.deepEqual(receipts, [{ msgType: 12, kind: "delivered", msgIds: ["m1", "m2"] }]);
});

test("autoDelivered: false sends no receipt; markRead and markRoomRead send what they are told", async () => {
  const c = client({ autoDelivered: false });
  const done = c.connect();
  const ws = await socket(0);
  ws.reply(login());
  await done;
  ws.reply({ msgType: 3, msgId: "m1", sendUserId: "bob", receivedUserId: "alice", seq: 1 });
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(ws.sent.filter((f) => f.msgType === 12).length, 0);
  const ids = Array.from({ length: 150 }, (_, i) => `m${i}`);
  c.markRead(ids);
  c.markRoomRead("lobby", 5);
  c.markRoomRead("lobby", 7);
  c.markRoomRead("lobby", 6);
  await until(() => ws.sent.filter((f) => f.msgType === 12).length === 3, "the room's position");
  const sent = ws.sent.filter((f) => f.msgType === 12);
  assert.deepEqual(sent.map((f) => f.msgIds?.length ?? f.seq), [100, 50, 7], "100 ids per frame");
  assert.equal(sent[2].roomId, "lobby");
});

test("receipts, amendments and typing come as their own events; a read notice moves no position", async () => {
  const c = client({ rooms: ["lobby"] });
  const seen: string[] = [];
  c.on("receipt", (r) => seen.push(`receipt ${r.kind} ${r.by} ${r.msgIds?.join(",") ?? r.seq}`));
  c.on("amended", (a) => seen.push(`amended ${a.op} ${a.amends}`));
  c.on("typing", (t) => seen.push(`typing ${t.sendUserId} ${t.typing}`));
  c.on("message", (m) => seen.push(`message ${m.msgId}`));
  const done = c.connect();
  const ws = await socket(0);
  ws.reply(login());
  await done;
  ws.reply({ msgType: 3, msgId: "r1", sendUserId: "bob", roomId: "lobby", seq: 1 });
  ws.reply({ msgType: 12, msgId: "n1", kind: "read", by: "bob", roomId: "lobby", seq: 9, volatile: true, sendUserId: "bob" });
  ws.reply({ msgType: 12, msgId: "n2", kind: "read", by: "bob", msgIds: ["x"], receivedUserId: "alice", seq: 1, sendUserId: "bob" });
  ws.reply({ msgType: 12, msgId: "n2", kind: "read", by: "bob", msgIds: ["x"], receivedUserId: "alice", seq: 1, sendUserId: "bob" });
  ws.reply({ msgType: 14, msgId: "a1", amends: "r1", op: "edit", roomId: "lobby", seq: 2, sendUserId: "bob" });
  ws.reply({ msgType: 15, msgId: "t1", roomId: "lobby", typing: true, volatile: true, latest: "typing", sendUserId: "bob" });
  assert.deepEqual(seen, [
    "message r1",
    "receipt read bob 9",
    "receipt read bob x",
    "amended edit r1",
    "typing bob true",
  ]);
  // The room stays at 2 (the amendment), not 9 (bob's read position).
  ws.drop();
  const ws2 = await socket(1);
  assert.deepEqual(ws2.sent[0].since, { inbox: 1, rooms: { lobby: 2 } });
});

test("edits, deletes and reactions go through the outbox; unread and readState are requests", async () => {
  const c = client();
  const done = c.connect();
  const ws = await socket(0);
  ws.reply(login());
  await done;
  const edited = c.edit("m1", { text: "fixed" });
  const reacted = c.react("m1", "👍", false);
  const [e, r] = ws.sent.slice(1);
  assert.deepEqual({ ...e, clientMsgId: 0 }, { msgType: 14, msgId: "m1", op: "edit", msgBody: { text: "fixed" }, clientMsgId: 0 });
  assert.equal(r.op, "unreact");
  ws.reply({ msgType: 4, clientMsgId: e.clientMsgId, msgId: "a1", seq: 2 });
  ws.reply({ msgType: 4, clientMsgId: r.clientMsgId, msgId: "a2", seq: 3 });
  assert.equal((await edited)?.msgId, "a1");
  assert.equal((await reacted)?.msgId, "a2");
  const unread = c.unread();
  const state = c.readState("lobby", { limit: 10 });
  assert.deepEqual(ws.sent.slice(3), [{ msgType: 13 }, { msgType: 13, roomId: "lobby", limit: 10 }]);
  ws.reply({ msgType: 13, unread: { inbox: 2, rooms: { lobby: 1 } } });
  ws.reply({ msgType: 13, roomId: "lobby", reads: { bob: 4 }, unread: 1 });
  assert.deepEqual(await unread, { inbox: 2, rooms: { lobby: 1 } });
  assert.deepEqual((await state).reads, { bob: 4 });
  c.typing({ roomId: "lobby" });
  assert.deepEqual(ws.sent.at(-1), { msgType: 15, roomId: "lobby", typing: true });
});

test("encoding: msgpack asks for the subprotocol and packs and unpacks every frame", async () => {
  const c = client({ encoding: "msgpack" });
  const got: unknown[] = [];
  c.on("message", (m) => got.push(m.msgBody));
  const done = c.connect();
  const ws = await socket(0);
  assert.deepEqual(ws.protocols, ["rtgate.msgpack"]);
  assert.equal(ws.binaryType, "arraybuffer");
  assert.deepEqual(ws.sent[0], { msgType: 2, rooms: [], sendUserId: "alice" });
  assert.equal(ws.packed, 1, "the login went packed");
  ws.replyPacked(login());
  await done;
  ws.replyPacked({ msgType: 3, msgId: "m1", sendUserId: "bob", roomId: "r", msgBody: { t: "héllo ✓", n: [1, 2.5] } });
  assert.deepEqual(got, [{ t: "héllo ✓", n: [1, 2.5] }]);
  const sent = c.sendToRoom("r", { x: 1 });
  const out = ws.sent.at(-1)!;
  assert.equal(ws.packed, 2);
  assert.deepEqual(out.msgBody, { x: 1 });
  ws.replyPacked({ msgType: 4, clientMsgId: out.clientMsgId, msgId: "m2", seq: 2 });
  assert.equal((await sent)?.msgId, "m2");
  // A text frame (the literal pong) is still read as text.
  ws.onmessage?.({ data: "pong" });
});

// --- the HTTP fallback ----------------------------------------------------

/** An EventSource whose server side the test plays. */
class FakeEventSource {
  static readonly CLOSED = 2;
  static all: FakeEventSource[] = [];
  readyState = 0;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  private listeners = new Map<string, ((ev: { data: string }) => void)[]>();
  constructor(readonly url: string) {
    FakeEventSource.all.push(this);
  }
  addEventListener(name: string, fn: (ev: { data: string }) => void) {
    this.listeners.set(name, [...(this.listeners.get(name) ?? []), fn]);
  }
  emit(name: string, data: unknown) {
    const ev = { data: typeof data === "string" ? data : JSON.stringify(data) };
    if (name === "message") this.onmessage?.(ev);
    for (const fn of this.listeners.get(name) ?? []) fn(ev);
  }
  close() {
    this.readyState = 2;
  }
}

test("transport: sse speaks Server-Sent Events down and ordered POSTs up", async () => {
  (globalThis as any).EventSource = FakeEventSource;
  const posts: { url: string; token: string; body: any }[] = [];
  const realFetch = globalThis.fetch;
  (globalThis as any).fetch = async (url: URL, init: any) => {
    posts.push({ url: String(url), token: init.headers["x-rtgate-post-token"], body: JSON.parse(init.body) });
    return { status: 204 };
  };
  try {
    const c = client({ transport: "sse" });
    const done = c.connect();
    await until(() => FakeEventSource.all.length === 1, "the event stream");
    const es = FakeEventSource.all[0];
    assert.equal(es.url, "http://chat.test/sse");
    es.emit("session", { sessionId: "s1", postToken: "t1" });
    await until(() => posts.length === 1, "the login POST");
    assert.equal(posts[0].url, "http://chat.test/sse/s1");
    assert.equal(posts[0].token, "t1");
    assert.deepEqual(posts[0].body, [{ msgType: 2, rooms: [], sendUserId: "alice" }]);
    es.emit("message", login());
    await done;
    assert.equal(c.transport, "sse");
    const got: unknown[] = [];
    c.on("message", (m) => got.push(m.msgBody));
    es.emit("message", { msgType: 3, msgId: "m1", sendUserId: "bob", roomId: "r", msgBody: "down" });
    assert.deepEqual(got, ["down"]);
    const sent = c.sendToRoom("r", "up");
    await until(() => posts.length === 2, "the send");
    const out = posts[1].body[0];
    assert.equal(out.msgBody, "up");
    es.emit("message", { msgType: 4, clientMsgId: out.clientMsgId, msgId: "m2", seq: 2 });
    assert.equal((await sent)?.msgId, "m2");
    // The server closes it with a code: the client comes back on a new stream.
    es.emit("close", { code: 1001, reason: "going away" });
    await until(() => FakeEventSource.all.length === 2, "a new stream after the close");
    // A stream the browser reopened by itself onto a new session (the server
    // restarted and could not resume): the client starts over and logs in.
    const es2 = FakeEventSource.all[1];
    es2.emit("session", { sessionId: "s2", postToken: "t2" });
    await until(() => posts.some((p) => p.url.endsWith("/sse/s2")), "the login on s2");
    es2.emit("message", login());
    es2.emit("session", { sessionId: "s3", postToken: "t3" });
    await until(() => FakeEventSource.all.length === 3, "a new stream for a lost session");
  } finally {
    (globalThis as any).fetch = realFetch;
    delete (globalThis as any).EventSource;
    FakeEventSource.all = [];
  }
});

test("registerDevice sends msgType 16 and settles on the answer; a refusal rejects with the server's reason", async () => {
  const c = client();
  const done = c.connect();
  const ws = await socket(0);
  ws.reply(login());
  await done;
  const added = c.registerDevice({ apns: "a1b2" });
  assert.deepEqual(ws.sent.at(-1), { msgType: 16, apns: "a1b2" });
  ws.reply({ msgType: 16 });
  await added;
  const removed = c.registerDevice({ fcm: "tok" }, true);
  assert.deepEqual(ws.sent.at(-1), { msgType: 16, fcm: "tok", remove: true });
  ws.reply({ msgType: 9, code: 400, reason: "this server sends no FCM pushes" });
  await assert.rejects(removed, (e: RtgateError) => e.code === 400 && /FCM/.test(e.message));
});

test("base64UrlBytes reads an applicationServerKey", () => {
  const bytes = base64UrlBytes("BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8");
  assert.equal(bytes.length, 65);
  assert.equal(bytes[0], 4);
  assert.deepEqual([...base64UrlBytes("_-8")], [0xff, 0xef]);
});
