// Delivery filters: at-least-once delivery means a replay can repeat a
// message the page already has, and "latest value" updates (typing, cursor)
// can arrive out of order as datagrams.

import type { Message } from "./types.js";

/** A set that forgets its oldest entries beyond `limit`. */
export class BoundedSet<T> {
  private readonly items = new Set<T>();
  constructor(private readonly limit: number) {}

  has(v: T): boolean {
    return this.items.has(v);
  }

  add(v: T): void {
    this.items.add(v);
    if (this.items.size > this.limit) this.items.delete(this.items.values().next().value as T);
  }

  get size(): number {
    return this.items.size;
  }
}

export type Verdict = "new" | "duplicate" | "stale";

/** Decides whether a delivered message is shown. */
export class DeliveryFilter {
  private readonly seen = new BoundedSet<string>(5000);
  private readonly latest = new Map<string, string>();

  check(m: Message): Verdict {
    if (m.msgId && this.seen.has(m.msgId)) return "duplicate";
    // msgIds are UUIDv7, ordered by time: an update older than the newest
    // shown for this sender, destination and key is stale.
    if (m.volatile && m.latest && m.msgId) {
      const k = [m.sendUserId, m.roomId ?? "", m.receivedUserId ?? "", m.latest].join("\u0000");
      const newest = this.latest.get(k);
      if (newest !== undefined && m.msgId <= newest) return "stale";
      this.latest.delete(k);
      this.latest.set(k, m.msgId);
      if (this.latest.size > 1000) this.latest.delete(this.latest.keys().next().value as string);
    }
    if (m.msgId) this.seen.add(m.msgId);
    return "new";
  }
}
