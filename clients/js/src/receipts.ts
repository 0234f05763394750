// Delivered receipts gathered for a moment and sent as one frame: a burst
// of direct messages costs one receipt frame, not one per message.

/** At most this many ids per receipt frame (the server's limit). */
export const MAX_RECEIPT_IDS = 100;

export class DeliveredReceipts {
  private ids: string[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly send: (frame: Record<string, unknown>) => void,
    private readonly delayMs = 300,
  ) {}

  /** A direct message reached us. */
  add(msgId: string): void {
    this.ids.push(msgId);
    if (this.ids.length >= MAX_RECEIPT_IDS) return this.flush();
    if (this.timer === undefined) this.timer = setTimeout(() => this.flush(), this.delayMs);
  }

  /** Sends what is gathered now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const frame of receiptFrames("delivered", this.ids.splice(0))) this.send(frame);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** Receipt frames for `ids`, 100 ids each. */
export function receiptFrames(kind: "delivered" | "read", ids: string[]): Record<string, unknown>[] {
  const frames = [];
  for (let i = 0; i < ids.length; i += MAX_RECEIPT_IDS) {
    frames.push({ msgType: 12, kind, msgIds: ids.slice(i, i + MAX_RECEIPT_IDS) });
  }
  return frames;
}
