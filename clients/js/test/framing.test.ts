import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeFrame, FrameDecoder } from "../src/framing.js";

test("a frame is a big-endian length and UTF-8 bytes", () => {
  const f = encodeFrame('{"t":"é"}');
  assert.deepEqual([...f.subarray(0, 4)], [0, 0, 0, 10]);
  assert.equal(new TextDecoder().decode(f.subarray(4)), '{"t":"é"}');
});

test("frames come out whole whatever the chunking", () => {
  const texts = ["a", "", '{"msgType":1}', "x".repeat(70_000), "ü€"];
  const bytes = Buffer.concat(texts.map((t) => encodeFrame(t)));
  for (const size of [1, 3, 4, 5, 17, 4096, bytes.length]) {
    const d = new FrameDecoder();
    const got: string[] = [];
    for (let at = 0; at < bytes.length; at += size) got.push(...d.push(new Uint8Array(bytes.subarray(at, at + size))));
    assert.deepEqual(got, texts, `chunks of ${size}`);
    assert.equal(d.pending, 0);
  }
});

test("an unfinished frame waits for the rest", () => {
  const d = new FrameDecoder();
  const f = encodeFrame("hello");
  assert.deepEqual(d.push(f.subarray(0, 6)), []);
  assert.equal(d.pending, 6);
  assert.deepEqual(d.push(f.subarray(6)), ["hello"]);
});
