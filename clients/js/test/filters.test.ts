import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff } from "../src/backoff.js";
import { tokenSubject } from "../src/client.js";
import { DeliveryFilter } from "../src/dedupe.js";
import { TransportMemory } from "../src/memory.js";

test("a replayed message is shown once; an older latest-value update is stale", () => {
  const f = new DeliveryFilter();
  assert.equal(f.check({ msgType: 3, msgId: "0001", seq: 1 }), "new");
  assert.equal(f.check({ msgType: 3, msgId: "0001", seq: 1 }), "duplicate");
  const upd = (msgId: string, sendUserId = "carol") =>
    ({ msgType: 3, msgId, sendUserId, roomId: "r", volatile: true, latest: "typing" }) as const;
  assert.equal(f.check(upd("0010")), "new");
  assert.equal(f.check(upd("0009")), "stale", "overtaken by a newer one");
  assert.equal(f.check(upd("0008", "dave")), "new", "another sender's key");
  assert.equal(f.check(upd("0011")), "new");
});

test("reconnect delays grow, stay under the cap and are spread by jitter", () => {
  const lows = new Backoff(500, 15000, () => 0);
  assert.equal(lows.next(), 50, "never below 50 ms");
  const highs = new Backoff(500, 15000, () => 1);
  assert.deepEqual(
    Array.from({ length: 8 }, () => highs.next()),
    [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000],
  );
  highs.reset();
  assert.equal(highs.next(), 500);
  // Fifty clients that lost the same node, at their sixth attempt (ceiling
  // 15 s): their delays are spread over the window, not in step.
  const sixth = Array.from({ length: 50 }, () => {
    const b = new Backoff(500, 15000);
    for (let i = 0; i < 5; i++) b.next();
    return b.next();
  });
  assert.ok(new Set(sixth).size >= 45, `a fleet does not come back in step: ${sixth}`);
  assert.ok(Math.min(...sixth) < 5000 && Math.max(...sixth) > 10000, `spread over the window: ${sixth}`);
});

test("the winning transport is remembered per origin until it expires", () => {
  const map = new Map<string, string>();
  let now = 1000;
  const m = new TransportMemory(
    { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v) },
    () => now,
  );
  assert.equal(m.get("https://chat.example:8443/x"), null);
  m.set("https://chat.example:8443/x", "websocket", 500);
  assert.equal(m.get("https://chat.example:8443/other"), "websocket", "same origin");
  assert.equal(m.get("https://chat.example:9443/"), null, "another origin");
  now = 1501;
  assert.equal(m.get("https://chat.example:8443/"), null, "forgotten");
  assert.equal(new TransportMemory(null).get("https://x/"), null, "no storage at all");
  // Whatever else is stored under the key is no memory.
  const key = "rtgate.transport:https://chat.example:8443";
  for (const junk of ["{", "null", "7", '"websocket"', '{"kind":"ftp","until":9999}', '{"kind":"websocket","until":"soon"}', '{"kind":["websocket"],"until":9999}']) {
    map.set(key, junk);
    assert.equal(m.get("https://chat.example:8443/"), null, junk);
  }
});

test("saved positions are keyed by the token's subject", () => {
  const payload = Buffer.from(JSON.stringify({ sub: "u-17", exp: 1 })).toString("base64url");
  assert.equal(tokenSubject(`h.${payload}.s`), "u-17");
  assert.equal(tokenSubject("not a jwt"), undefined);
  assert.equal(tokenSubject(undefined), undefined);
});
