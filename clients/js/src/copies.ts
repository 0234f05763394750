// Redundant copies over WebTransport (`redundancy`): a stored message may
// come twice, on its channel's stream and as a datagram. A datagram copy
// that outran a predecessor still on its way waits here, by msgId, until
// the gap closes or its own stream copy comes (the stream is in order: what
// came before it on the stream has come), so the page sees each channel in
// seq order.

import type { Message } from "./types.js";

/** Copies held at most; past it the oldest goes on regardless. */
const MAX_HELD = 256;

export class EarlyCopies {
  private readonly held = new Map<string, Message>();

  /** `positionOf` answers a channel's last delivered seq, if known. */
  constructor(private readonly positionOf: (m: Message) => number | undefined) {}

  get size(): number {
    return this.held.size;
  }

  has(msgId: string): boolean {
    return this.held.has(msgId);
  }

  /** Takes back a held copy (its stream copy came). */
  take(msgId: string): Message | undefined {
    const m = this.held.get(msgId);
    this.held.delete(msgId);
    return m;
  }

  /** Holds `m` if it came ahead of its channel (true); `deliver` gets the
   * oldest held copy when there is no room left. */
  hold(m: Message, deliver: (m: Message) => void): boolean {
    if (m.seq === undefined || m.volatile || !m.msgId) return false;
    const at = this.positionOf(m);
    if (at === undefined || m.seq <= at + 1) return false;
    if (this.held.size >= MAX_HELD) {
      const [id, oldest] = this.held.entries().next().value as [string, Message];
      this.held.delete(id);
      deliver(oldest);
    }
    this.held.set(m.msgId, m);
    return true;
  }

  /** Hands `deliver` the held copies that are now next in their channel, in seq order. */
  release(deliver: (m: Message) => void): void {
    for (let again = true; again && this.held.size > 0; ) {
      again = false;
      for (const [id, m] of this.held) {
        const at = this.positionOf(m);
        if (at === undefined || m.seq! <= at + 1) {
          this.held.delete(id);
          deliver(m);
          again = true;
        }
      }
    }
  }
}
