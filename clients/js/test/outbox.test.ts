import assert from "node:assert/strict";
import { mock, test } from "node:test";
import { RtgateError } from "../src/errors.js";
import { newClientMsgId, Outbox, type OutFrame } from "../src/outbox.js";
import type { Ack } from "../src/types.js";

const frame = (id: string): OutFrame => ({ msgType: 3, roomId: "r", msgBody: id, clientMsgId: id });
const ack = (id: string, seq: number): Ack => ({ msgType: 4, clientMsgId: id, msgId: `m${seq}`, seq });

test("sends queued while offline go out in order on the next connection, once each", async () => {
  const sizes: number[] = [];
  const box = new Outbox((n) => sizes.push(n));
  const a = box.add(frame("a"), 1000);
  const b = box.add(frame("b"), 1000);
  assert.deepEqual(box.due(1).map((f) => f.clientMsgId), ["a", "b"]);
  assert.deepEqual(box.due(1), [], "nothing twice on one connection");
  const c = box.add(frame("c"), 1000);
  assert.deepEqual(box.due(1).map((f) => f.clientMsgId), ["c"]);
  // The connection drops before any ack: all three go out again, in order.
  assert.deepEqual(box.due(2).map((f) => f.clientMsgId), ["a", "b", "c"]);
  assert.ok(box.settle("b", ack("b", 2)));
  assert.ok(box.settle("a", ack("a", 1)));
  assert.ok(box.settle("c", ack("c", 3)));
  assert.ok(!box.settle("c", ack("c", 3)), "a second ack for the same id is ignored");
  assert.deepEqual(await Promise.all([a, b, c]), [ack("a", 1), ack("b", 2), ack("c", 3)]);
  assert.deepEqual(sizes, [1, 2, 3, 2, 1, 0]);
});

test("a send without an ack in time is rejected with 408 and never written again", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const box = new Outbox();
    const p = box.add(frame("slow"), 5000);
    box.add(frame("fast"), 60_000).catch(() => {});
    mock.timers.tick(4999);
    assert.equal(box.size, 2);
    mock.timers.tick(1);
    await assert.rejects(p, (e: RtgateError) => e.code === 408 && e.clientMsgId === "slow" && /5000 ms/.test(e.message));
    assert.deepEqual(box.due(1).map((f) => f.clientMsgId), ["fast"]);
  } finally {
    mock.timers.reset();
  }
});

test("a refusal rejects with the server's code; a 503 is written again", async () => {
  const box = new Outbox();
  const refused = box.add(frame("x"), 1000);
  const busy = box.add(frame("y"), 1000);
  box.due(1);
  box.fail("x", new RtgateError(403, "not in this room", "x"));
  await assert.rejects(refused, (e: RtgateError) => e.code === 403 && e.message === "not in this room");
  assert.ok(box.retry("y"));
  assert.deepEqual(box.due(1).map((f) => f.clientMsgId), ["y"], "written again on the same connection");
  box.settle("y", ack("y", 9));
  assert.equal((await busy)?.seq, 9);
});

test("closing rejects everything pending; a duplicate clientMsgId is refused", async () => {
  const box = new Outbox();
  const a = box.add(frame("a"), 1000);
  await assert.rejects(box.add(frame("a"), 1000), (e: RtgateError) => e.code === 400);
  box.failAll((id) => new RtgateError(410, "client closed", id));
  await assert.rejects(a, (e: RtgateError) => e.code === 410);
  assert.equal(box.size, 0);
});

test("clientMsgIds are unique and within the protocol's 64 characters", () => {
  const ids = new Set(Array.from({ length: 1000 }, newClientMsgId));
  assert.equal(ids.size, 1000);
  for (const id of ids) assert.ok(id.length >= 1 && id.length <= 64, id);
});
