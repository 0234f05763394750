// The frames of the rtgate wire protocol (docs/protocol.md) as the client
// sees them, its options and the events it emits.

/** An id as the server writes it (clients may send integers; the server answers strings). */
export type Id = string;

/** What a page sends: a destination, a body and the optional fields of a business message. */
export interface Outgoing {
  msgType?: number;
  receivedUserId?: Id;
  roomId?: Id;
  bizType?: string | number;
  bizOptModule?: string | number;
  msgBody?: unknown;
  clientMsgId?: string;
  volatile?: boolean;
  latest?: string;
}

/** A business message as delivered (msgType 3 or >= 100): what was sent, stamped by the server. */
export interface Message extends Outgoing {
  msgType: number;
  msgId?: string;
  ts?: number;
  seq?: number;
  sendUserId?: Id;
  /** Set by this client, not the server: how the first copy came
   * ("datagram": a redundant copy outran the stream's). */
  via?: "stream" | "datagram";
}

/** The ack of a stored message (msgType 4). */
export interface Ack {
  msgType: 4;
  clientMsgId: string;
  msgId: string;
  seq: number;
  ts?: number;
}

/** The login reply (msgType 2). */
export interface LoginReply {
  msgType: 2;
  sendUserId: Id;
  sessionId: string;
  nodeId: string;
  heartbeatSec: number;
  inboxSeq: number;
  ts?: number;
  unrecovered?: string[];
  /** On WebTransport: the draft the session speaks ("draft-02", "draft-13", ...). */
  wtDraft?: string;
  /** Unread counts of the inbox and the rooms joined at login. */
  unread?: Unread;
}

/** Unread counts (the login reply, `unread()`). */
export interface Unread {
  inbox: number;
  rooms: Record<string, number>;
}

/**
 * A receipt (msgType 12): stored in the sender's inbox for direct messages
 * (`msgIds`, with a `seq`), or a room member's read position (`roomId`,
 * `seq` is how far `by` has read; not stored).
 */
export interface Receipt extends Message {
  msgType: 12;
  kind: "delivered" | "read";
  by: Id;
  msgIds?: string[];
}

/** An amendment (msgType 14) of the message `amends`. */
export interface Amendment extends Message {
  msgType: 14;
  amends: string;
  op: "edit" | "delete" | "react" | "unreact";
  reaction?: string;
}

/** A typing notice (msgType 15). */
export interface Typing extends Message {
  msgType: 15;
  typing: boolean;
}

/** A room's read state (msgType 13 with `roomId`). */
export interface ReadState {
  msgType: 13;
  roomId: Id;
  /** Members' read positions. */
  reads: Record<string, number>;
  /** The caller's unread count in the room. */
  unread: number;
  /** Pass as `after` for the next page of members. */
  next?: string;
}

/** An error (msgType 9). */
export interface ErrorFrame {
  msgType: 9;
  code: number;
  reason: string;
  clientMsgId?: string;
}

/** Join (5) and leave (6) answers. */
export interface RoomReply {
  msgType: 5 | 6;
  roomId: Id;
  seq?: number;
}

/** A history answer (msgType 7). */
export interface HistoryReply {
  msgType: 7;
  roomId?: Id;
  seq: number;
  messages: Message[];
}

/** A presence answer (msgType 8). */
export interface PresenceReply {
  msgType: 8;
  roomId?: Id;
  userIds: Id[];
}

/** A presence event (msgType 11), for sessions that joined with `presenceEvents`. */
export interface PresenceEvent {
  msgType: 11;
  roomId: Id;
  userId: Id;
  event: "join" | "leave";
  info?: unknown;
}

/** A token notice or refresh answer (msgType 10). */
export interface TokenNotice {
  msgType: 10;
  exp: number;
}

export type ConnectionState =
  | "idle"
  | "connecting"
  | "logging-in"
  | "connected"
  | "reconnecting"
  | "refused"
  | "closed";

export type TransportKind = "webtransport" | "websocket" | "sse";

export interface StateChange {
  state: ConnectionState;
  detail?: string;
  transport: TransportKind | null;
  /** The WebTransport draft the session speaks (from the login reply). */
  wtDraft?: string | null;
  /** Whether volatile messages travel as datagrams. */
  datagrams?: boolean;
}

/** Everything a client emits, by event name. */
export interface ClientEvents {
  /** The connection state changed. */
  state: StateChange;
  /** A business message (live or replayed), once. */
  message: Message;
  /** A volatile "latest value" update older than one already shown; dropped. */
  stale: Message;
  /** Every successful login, the first and each after a reconnect. */
  login: LoginReply;
  /** An error frame that no pending call took. */
  error: ErrorFrame;
  /** WebTransport was not used, and why. */
  fallback: string;
  /** The server says the token expires at `exp`. */
  expiring: TokenNotice;
  /** A token refresh was accepted. */
  refreshed: TokenNotice;
  /** The server left a room for us (a refreshed token or the backend took it away). */
  left: RoomReply;
  /** A presence event in a room joined with `presenceEvents`. */
  presence: PresenceEvent;
  /** The number of sends waiting for their ack changed. */
  outbox: { pending: number };
  /** A delivered or read receipt for our messages, or a room member's read position. */
  receipt: Receipt;
  /** An edit, delete or reaction of a message (live or replayed), once. */
  amended: Amendment;
  /** Someone started or stopped typing. */
  typing: Typing;
}

export interface ClientOptions {
  /** Server base URL (http[s]://host:port); default: the page's origin. */
  url?: string;
  /** Dev-mode identity (the server ignores it when a token or hook decides). */
  userId?: Id;
  /** JWT, when the server requires one. */
  token?: string;
  /**
   * Fetches a fresh token: before every (re)connect, when the server says the
   * token expires soon (msgType 10), and after a 4401 close.
   */
  getToken?: () => Promise<string>;
  /** Rooms to join at every login. */
  rooms?: Id[];
  /** Ask for msgType 11 presence events in the rooms this client joins. */
  presenceEvents?: boolean;
  /** "auto" (WebTransport raced against WebSocket), "webtransport" or "websocket". */
  transport?: "auto" | TransportKind;
  /**
   * Redundant datagram copies of stored messages over WebTransport:
   * "auto" (default: only while the connection loses packets), "datagram"
   * (always) or "off". The first copy is kept, in seq order per channel.
   */
  redundancy?: "auto" | "datagram" | "off";
  /** WebTransport URL; default: the one `/cert-hash` names. */
  wtUrl?: string;
  /** How long a WebTransport attempt may take (ms, default 3000). */
  wtTimeoutMs?: number;
  /** How long "auto" waits for WebTransport once the WebSocket is up (ms, default 250). */
  wtGraceMs?: number;
  /** How long this origin remembers which transport won (ms, default 10 min). */
  wtMemoryMs?: number;
  /** How long a send may wait for its ack, across reconnects, before it is rejected (ms, default 30 s). */
  sendTimeoutMs?: number;
  /** How long join, leave, history and presence wait for their answer (ms, default 10 s). */
  requestTimeoutMs?: number;
  /**
   * Where positions (inbox and room seqs, joined rooms) survive a reload:
   * `true` (default) uses IndexedDB when the page has it, `false` keeps them
   * in memory only, or a store of your own.
   */
  persist?: boolean | import("./positions.js").PositionStore;
  /** First reconnect delay (ms, default 500); doubles up to `maxBackoffMs`, with full jitter. */
  backoffMs?: number;
  /** Longest reconnect delay (ms, default 15000). */
  maxBackoffMs?: number;
  /** Send delivered receipts for direct messages as they arrive (default true). */
  autoDelivered?: boolean;
  /** Frames as MessagePack instead of JSON text (smaller on metered links). */
  encoding?: "json" | "msgpack";
}
