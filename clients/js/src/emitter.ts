// A typed event emitter: `on("message", (m) => ...)` knows `m` is a Message.

export type Listener<T> = (arg: T) => void;

export class Emitter<Events extends object> {
  private listeners: { [K in keyof Events]?: Listener<Events[K]>[] } = {};

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    (this.listeners[event] ??= []).push(fn);
    return () => this.off(event, fn);
  }

  off<K extends keyof Events>(event: K, fn: Listener<Events[K]>): void {
    const list = this.listeners[event];
    if (list) this.listeners[event] = list.filter((f) => f !== fn);
  }

  /** Calls every listener; one that throws is reported and does not stop the others. */
  emit<K extends keyof Events>(event: K, arg: Events[K]): void {
    for (const fn of this.listeners[event] ?? []) {
      try {
        fn(arg);
      } catch (e) {
        console.error(e);
      }
    }
  }

  removeAll(): void {
    this.listeners = {};
  }
}
