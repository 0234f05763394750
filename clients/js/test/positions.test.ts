import assert from "node:assert/strict";
import { test } from "node:test";
import { MemoryStore, PositionTracker } from "../src/positions.js";

test("delivered messages move their channel's position, never back", () => {
  const p = new PositionTracker(["lobby"]);
  assert.equal(p.since(), undefined, "nothing to resume from before the first login");
  p.loggedIn("alice", 7);
  assert.ok(p.observe({ msgType: 3, receivedUserId: "alice", seq: 9 }));
  assert.ok(!p.observe({ msgType: 3, receivedUserId: "alice", seq: 8 }), "a replayed older one");
  assert.ok(!p.observe({ msgType: 3, roomId: "lobby" }), "no seq: volatile");
  p.joinedRoom("lobby", 3);
  assert.ok(p.observe({ msgType: 3, roomId: "lobby", seq: 4 }));
  assert.ok(!p.observe({ msgType: 3, roomId: "elsewhere", seq: 40 }), "a room not joined");
  assert.deepEqual(p.since(), { inbox: 9, rooms: { lobby: 4 } });
  p.leftRoom("lobby");
  assert.deepEqual(p.since(), { inbox: 9, rooms: {} });
});

test("a join keeps a known position; the login's inbox seq only fills a gap", () => {
  const p = new PositionTracker();
  p.joinedRoom("r", 10);
  p.observe({ msgType: 3, roomId: "r", seq: 12 });
  p.joinedRoom("r", 15);
  assert.equal(p.rooms.get("r"), 12, "a second join answer does not skip unread messages");
  p.loggedIn("bob", 5);
  p.loggedIn("bob", 50);
  assert.equal(p.inbox, 5);
});

test("saved positions restore after a reload, with the rooms asked for now", async () => {
  const store = new MemoryStore();
  const before = new PositionTracker(["a"]);
  before.loggedIn("alice", 1);
  before.joinedRoom("b", 20);
  before.observe({ msgType: 3, roomId: "a", seq: 2 });
  before.observe({ msgType: 3, roomId: "b", seq: 21 });
  await store.save("origin|alice", before.snapshot());
  const after = new PositionTracker(["c"]);
  after.restore((await store.load("origin|alice"))!);
  assert.deepEqual([...after.joined].sort(), ["a", "b", "c"]);
  assert.deepEqual(after.since(), { inbox: 1, rooms: { a: 2, b: 21 } });
  assert.equal(await store.load("origin|bob"), null);
});

test("positions of another user are dropped at login", () => {
  const p = new PositionTracker();
  p.restore({ user: "alice", inbox: 30, rooms: { r: 4 }, joined: ["r"] });
  p.loggedIn("mallory", 2);
  assert.equal(p.inbox, 2);
  assert.equal(p.rooms.size, 0);
});

test("corrupt saved positions are cleaned, never sent as since", () => {
  const garbage: unknown[] = [
    null,
    42,
    "positions",
    [],
    { user: 7 },
    { user: "" },
    { user: "alice", inbox: -1, rooms: null, joined: "lobby" },
    { user: "alice", inbox: "9", rooms: { a: "x", b: -2, c: 1.5, d: 1e300, e: 4 }, joined: [1, "a", "e", "e"] },
    { user: "alice", inbox: Number.MAX_SAFE_INTEGER + 2, rooms: [5], joined: [null] },
    { user: "x".repeat(300), inbox: 1, rooms: {}, joined: [] },
  ];
  for (const g of garbage) {
    const p = new PositionTracker();
    p.restore(g as never);
    const since = p.since();
    if (since === undefined) continue;
    if (since.inbox !== undefined) assert.ok(Number.isSafeInteger(since.inbox) && since.inbox >= 0, JSON.stringify(g));
    for (const [room, seq] of Object.entries(since.rooms)) {
      assert.ok(room.length > 0 && Number.isSafeInteger(seq) && seq >= 0, `${room}: ${seq} from ${JSON.stringify(g)}`);
    }
  }
  // What is valid in a partly corrupt entry is kept.
  const p = new PositionTracker();
  p.restore({ user: "alice", inbox: "9", rooms: { a: "x", e: 4 }, joined: [1, "a", "e", "e"] } as never);
  assert.deepEqual(p.since(), { rooms: { e: 4 } });
  assert.deepEqual([...p.joined].sort(), ["a", "e"]);
});
