// Reconnect delays: exponential with full jitter, so a fleet that lost its
// node at the same moment comes back spread out instead of all at once.

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly firstMs = 500,
    private readonly maxMs = 15000,
    private readonly random: () => number = Math.random,
  ) {}

  /** The next delay: uniform in [0, min(max, first * 2^attempt)], at least 50 ms. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.firstMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.max(50, Math.round(this.random() * ceiling));
  }

  /** After a good login. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
