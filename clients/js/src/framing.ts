// WebTransport stream framing: each frame is a 4-byte big-endian length and
// that many bytes of UTF-8 JSON (docs/protocol.md §2).

const encoder = new TextEncoder();
const utf8 = new TextDecoder();

/** One text frame with its length prefix. */
export function encodeFrame(text: string): Uint8Array {
  return encodeFrameBytes(encoder.encode(text));
}

/** One frame's bytes (JSON text or MessagePack) with the length prefix. */
export function encodeFrameBytes(body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  return frame;
}

/** Splits a byte stream into frames, whatever the chunking. */
export class FrameDecoder {
  private buf: Uint8Array = new Uint8Array(0);

  /** `decode` turns a frame's bytes into JSON text (UTF-8 by default). */
  constructor(private readonly decode: (bytes: Uint8Array) => string = (b) => utf8.decode(b)) {}

  /** Takes a chunk; returns the frames it completed, in order. */
  push(chunk: Uint8Array): string[] {
    if (this.buf.length === 0) {
      this.buf = chunk;
    } else {
      const next = new Uint8Array(this.buf.length + chunk.length);
      next.set(this.buf);
      next.set(chunk, this.buf.length);
      this.buf = next;
    }
    const frames: string[] = [];
    let at = 0;
    while (this.buf.length - at >= 4) {
      const n = new DataView(this.buf.buffer, this.buf.byteOffset + at).getUint32(0);
      if (this.buf.length - at < 4 + n) break;
      frames.push(this.decode(this.buf.subarray(at + 4, at + 4 + n)));
      at += 4 + n;
    }
    // Keep only the unfinished tail (a copy, so a large chunk is not pinned).
    this.buf = at === 0 ? this.buf : this.buf.slice(at);
    return frames;
  }

  /** Bytes of an unfinished frame held. */
  get pending(): number {
    return this.buf.length;
  }
}
