// Frame encodings (docs/protocol.md, "Frames"): JSON text by default, or
// MessagePack (`encoding: "msgpack"`: the WebSocket subprotocol
// rtgate.msgpack, `encoding=msgpack` on WebTransport). Inside the client
// every frame is JSON text; a MessagePack link packs what it sends and
// unpacks what it gets. The literals `ping` and `pong` stay text.

import { decode, encode } from "@msgpack/msgpack";

export type Encoding = "json" | "msgpack";

/** The WebSocket subprotocol that asks the server for MessagePack. */
export const MSGPACK_SUBPROTOCOL = "rtgate.msgpack";

const utf8 = new TextEncoder();
const text = new TextDecoder();
const LITERALS = new Set(["ping", "pong"]);

export class Codec {
  constructor(readonly encoding: Encoding = "json") {}

  get packed(): boolean {
    return this.encoding === "msgpack";
  }

  /** A frame as it goes on the wire. */
  pack(json: string): Uint8Array {
    if (!this.packed || LITERALS.has(json)) return utf8.encode(json);
    return encode(JSON.parse(json));
  }

  /** A frame from the wire, as JSON text. */
  unpack(bytes: Uint8Array): string {
    if (!this.packed) return text.decode(bytes);
    if (bytes.length === 4) {
      const t = text.decode(bytes);
      if (LITERALS.has(t)) return t;
    }
    return JSON.stringify(decode(bytes));
  }
}
