// How far this client has read: its inbox seq, each joined room's seq and
// the rooms it is in. A login after a reconnect, or after a page reload when
// the positions are persisted, sends them as `since`, so the server replays
// exactly what was missed.

import type { Message } from "./types.js";

/** What is persisted per origin and user. */
export interface Positions {
  /** The user they belong to, as the server named it at login. */
  user: string | null;
  inbox: number | null;
  rooms: Record<string, number>;
  /** Rooms joined (with or without a known seq). */
  joined: string[];
}

/** Rooms kept from saved positions at most (the server caps a session's rooms lower). */
const MAX_SAVED_ROOMS = 1000;
/** Longest room or user id kept from saved positions. */
const MAX_ID = 256;

const isSeq = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isId = (v: unknown): v is string => typeof v === "string" && v.length > 0 && v.length <= MAX_ID;

/**
 * Saved positions as stored, checked: storage is written by other code too
 * (an older version, an extension, a user's console), and one bad value
 * sent as `since` would make every login fail (400). Whatever is not a
 * valid position is dropped; `null` when nothing usable is left.
 */
export function sanitize(v: unknown): Positions | null {
  if (typeof v !== "object" || v === null) return null;
  const o = v as Record<string, unknown>;
  const user = isId(o.user) ? o.user : null;
  if (user === null) return null;
  const inbox = isSeq(o.inbox) ? o.inbox : null;
  const joined = Array.isArray(o.joined) ? o.joined.filter(isId).slice(0, MAX_SAVED_ROOMS) : [];
  const rooms: Record<string, number> = {};
  if (typeof o.rooms === "object" && o.rooms !== null && !Array.isArray(o.rooms)) {
    for (const [r, seq] of Object.entries(o.rooms as Record<string, unknown>).slice(0, MAX_SAVED_ROOMS)) {
      if (isId(r) && isSeq(seq)) rooms[r] = seq;
    }
  }
  return { user, inbox, rooms, joined: [...new Set(joined)] };
}

/** Where positions survive a reload. */
export interface PositionStore {
  load(key: string): Promise<Positions | null>;
  save(key: string, p: Positions): Promise<void>;
}

/** Positions kept for this page's life only. */
export class MemoryStore implements PositionStore {
  private readonly map = new Map<string, Positions>();
  async load(key: string): Promise<Positions | null> {
    const p = this.map.get(key);
    return p ? structuredClone(p) : null;
  }
  async save(key: string, p: Positions): Promise<void> {
    this.map.set(key, structuredClone(p));
  }
}

/** Positions in IndexedDB (database "rtgate", store "positions"). */
export class IndexedDbStore implements PositionStore {
  private db: Promise<IDBDatabase> | null = null;

  constructor(private readonly dbName = "rtgate") {}

  static available(): boolean {
    try {
      return typeof indexedDB !== "undefined" && indexedDB !== null;
    } catch {
      return false;
    }
  }

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise((resolve, reject) => {
      const req = indexedDB.open(this.dbName, 1);
      req.onupgradeneeded = () => req.result.createObjectStore("positions");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return this.db;
  }

  private async run<T>(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest): Promise<T> {
    const db = await this.open();
    return new Promise<T>((resolve, reject) => {
      const tx = db.transaction("positions", mode);
      const req = op(tx.objectStore("positions"));
      tx.oncomplete = () => resolve(req.result as T);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  async load(key: string): Promise<Positions | null> {
    return (await this.run<Positions | undefined>("readonly", (s) => s.get(key))) ?? null;
  }

  async save(key: string, p: Positions): Promise<void> {
    await this.run("readwrite", (s) => s.put(p, key));
  }
}

/** The live positions, moved by what is delivered. */
export class PositionTracker {
  user: string | null = null;
  inbox: number | null = null;
  readonly rooms = new Map<string, number>();
  readonly joined = new Set<string>();

  constructor(rooms: Iterable<string> = []) {
    for (const r of rooms) this.joined.add(r);
  }

  /** Takes saved positions (those of a page before a reload); the rooms asked for now stay. */
  restore(saved: Positions): void {
    const p = sanitize(saved);
    if (p === null) return;
    this.user = p.user;
    this.inbox = p.inbox;
    for (const r of p.joined) this.joined.add(r);
    for (const [r, seq] of Object.entries(p.rooms)) if (this.joined.has(r)) this.rooms.set(r, seq);
  }

  /** A delivered message moves its channel's position; true when one moved. */
  observe(m: Message): boolean {
    if (m.seq === undefined) return false;
    if (m.receivedUserId !== undefined) {
      if (this.inbox !== null && m.seq <= this.inbox) return false;
      this.inbox = m.seq;
      return true;
    }
    if (m.roomId !== undefined && this.joined.has(m.roomId)) {
      const at = this.rooms.get(m.roomId);
      if (at !== undefined && m.seq <= at) return false;
      this.rooms.set(m.roomId, m.seq);
      return true;
    }
    return false;
  }

  /** The position of the channel `m` belongs to, if known (its last seq). */
  positionOf(m: Message): number | undefined {
    if (m.receivedUserId !== undefined) return this.inbox ?? undefined;
    if (m.roomId !== undefined && this.joined.has(m.roomId)) return this.rooms.get(m.roomId);
    return undefined;
  }

  /** A login reply: the inbox position when none is known yet. */
  loggedIn(user: string, inboxSeq: number): void {
    if (this.user !== null && this.user !== user) {
      // Positions of another identity (a shared browser): start afresh.
      this.inbox = null;
      this.rooms.clear();
    }
    this.user = user;
    if (this.inbox === null) this.inbox = inboxSeq;
  }

  /** A join answer: the room's position when none is known yet. */
  joinedRoom(room: string, seq: number | undefined): void {
    this.joined.add(room);
    if (!this.rooms.has(room) && seq !== undefined) this.rooms.set(room, seq);
  }

  leftRoom(room: string): void {
    this.joined.delete(room);
    this.rooms.delete(room);
  }

  /** The login's `since`, once there is something to resume from. */
  since(): { inbox?: number; rooms: Record<string, number> } | undefined {
    if (this.inbox === null && this.rooms.size === 0) return undefined;
    const since: { inbox?: number; rooms: Record<string, number> } = { rooms: Object.fromEntries(this.rooms) };
    if (this.inbox !== null) since.inbox = this.inbox;
    return since;
  }

  snapshot(): Positions {
    return { user: this.user, inbox: this.inbox, rooms: Object.fromEntries(this.rooms), joined: [...this.joined] };
  }
}
