// Sends waiting for their ack. A send made while disconnected waits here and
// goes out after the next login; one written but not acked when the
// connection dropped goes out again (the server dedupes by clientMsgId, so a
// resend is answered with the first one's ack). Each is rejected when its
// deadline passes first.

import { RtgateError } from "./errors.js";
import type { Ack, Outgoing } from "./types.js";

/** A business message frame with its clientMsgId. */
export type OutFrame = Outgoing & { msgType: number; clientMsgId: string };

interface Entry {
  frame: OutFrame;
  resolve: (ack: Ack) => void;
  reject: (e: RtgateError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** The connection it was last written on; -1 while it waits for one. */
  writtenOn: number;
}

export class Outbox {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly onChange: (pending: number) => void = () => {}) {}

  /** Queues a frame; settles with its ack, or rejects after `timeoutMs`. */
  add(frame: OutFrame, timeoutMs: number): Promise<Ack> {
    if (this.entries.has(frame.clientMsgId)) {
      return Promise.reject(new RtgateError(400, "clientMsgId already pending", frame.clientMsgId));
    }
    return new Promise<Ack>((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(frame.clientMsgId, new RtgateError(408, `no ack within ${timeoutMs} ms`, frame.clientMsgId)),
        timeoutMs,
      );
      this.entries.set(frame.clientMsgId, { frame, resolve, reject, timer, writtenOn: -1 });
      this.onChange(this.entries.size);
    });
  }

  /**
   * The frames to write on connection `conn`, oldest first: those never
   * written on it. They count as written once returned.
   */
  due(conn: number): OutFrame[] {
    const out: OutFrame[] = [];
    for (const e of this.entries.values()) {
      if (e.writtenOn !== conn) {
        e.writtenOn = conn;
        out.push(e.frame);
      }
    }
    return out;
  }

  /** Writes a frame again on the next flush (the server could not store it: 503). */
  retry(id: string): boolean {
    const e = this.entries.get(id);
    if (e) e.writtenOn = -1;
    return e !== undefined;
  }

  /** The ack arrived. */
  settle(id: string, ack: Ack): boolean {
    const e = this.take(id);
    e?.resolve(ack);
    return e !== undefined;
  }

  /** The server refused it, or its time ran out. */
  fail(id: string, err: RtgateError): boolean {
    const e = this.take(id);
    e?.reject(err);
    return e !== undefined;
  }

  /** Rejects everything (the client closed, or login was refused for good). */
  failAll(err: (id: string) => RtgateError): void {
    for (const id of [...this.entries.keys()]) this.fail(id, err(id));
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  get size(): number {
    return this.entries.size;
  }

  private take(id: string): Entry | undefined {
    const e = this.entries.get(id);
    if (!e) return undefined;
    clearTimeout(e.timer);
    this.entries.delete(id);
    this.onChange(this.entries.size);
    return e;
  }
}

/** A fresh clientMsgId: time, then randomness (1 to 64 characters, as the protocol wants). */
export function newClientMsgId(): string {
  const rand =
    typeof crypto !== "undefined" && "randomUUID" in crypto
      ? crypto.randomUUID().replace(/-/g, "").slice(0, 16)
      : Math.random().toString(36).slice(2, 12);
  return `${Date.now().toString(36)}-${rand}`;
}
