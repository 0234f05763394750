// Which transport won for an origin, remembered for a while (localStorage in
// a page), so a returning user on a network that blocks UDP goes straight to
// WebSocket instead of waiting out a WebTransport attempt.

import type { TransportKind } from "./types.js";

/** The part of the Web Storage API used here. */
export interface KeyValue {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export class TransportMemory {
  constructor(
    private readonly storage: KeyValue | null,
    private readonly now: () => number = Date.now,
  ) {}

  /** The page's localStorage, or none (private mode, workers, Node). */
  static local(): TransportMemory {
    let storage: KeyValue | null = null;
    try {
      storage = globalThis.localStorage ?? null;
    } catch {
      storage = null;
    }
    return new TransportMemory(storage);
  }

  private key(url: string): string {
    return "rtgate.transport:" + new URL(url).origin;
  }

  get(url: string): TransportKind | null {
    try {
      const v = JSON.parse(this.storage?.getItem(this.key(url)) ?? "null");
      // Whatever else is stored there (by an older version, by hand) is not a memory.
      const known = v?.kind === "webtransport" || v?.kind === "websocket" || v?.kind === "sse";
      const kind = known ? (v.kind as TransportKind) : null;
      return kind && typeof v.until === "number" && v.until > this.now() ? kind : null;
    } catch {
      return null;
    }
  }

  set(url: string, kind: TransportKind, forMs: number): void {
    try {
      this.storage?.setItem(this.key(url), JSON.stringify({ kind, until: this.now() + forMs }));
    } catch {
      // storage full or off: the race simply runs again next time
    }
  }
}
