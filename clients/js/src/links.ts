// The two transports behind one link: WebSocket (one text message per
// frame) and WebTransport (length-prefixed frames on a bidirectional stream,
// a server-opened stream per channel, datagrams for volatile messages).

import { Codec, MSGPACK_SUBPROTOCOL } from "./codec.js";
import { encodeFrameBytes, FrameDecoder } from "./framing.js";
import type { TransportKind } from "./types.js";

/** One connection, whichever transport carries it. */
export interface Link {
  readonly kind: TransportKind;
  /** False once closed by either side. */
  open: boolean;
  send(text: string): void;
  /** A volatile frame: a datagram where the transport has them and it fits. */
  sendVolatile(text: string): void;
  /** Whether volatile frames can travel as datagrams (false on WebSocket,
   * and on a browser without `datagrams.writable`, such as Safari 26.4). */
  readonly datagrams: boolean;
  close(code: number, reason: string): void;
}

/** Where a link's frames and its end go. Set `link` before events can fire. */
export interface LinkHandlers {
  link: Link | null;
  /** A frame; `datagram` when it came as one (WebTransport). */
  onmessage(text: string, datagram?: boolean): void;
  onclose(code: number, reason: string): void;
  /** The browser refused a datagram: volatile frames use the stream from now on. */
  ondatagramsoff?(reason: string): void;
}

export interface LinkOptions {
  url: string;
  token?: string;
  wtUrl?: string;
  /** MessagePack frames instead of JSON text. */
  encoding?: "json" | "msgpack";
}

export class WsLink implements Link {
  readonly kind = "websocket" as const;
  readonly datagrams = false;
  open = true;

  constructor(
    private readonly ws: WebSocket,
    private readonly codec = new Codec(),
  ) {}

  /** Resolves with the link once open, or with a closed link when it never opened. */
  static open(opts: LinkOptions, h: LinkHandlers): Promise<WsLink> {
    return new Promise((resolve) => {
      const u = new URL(opts.url);
      u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
      u.pathname = "/ws";
      if (opts.token) u.searchParams.set("token", opts.token);
      const codec = new Codec(opts.encoding);
      const ws = codec.packed ? new WebSocket(u.toString(), [MSGPACK_SUBPROTOCOL]) : new WebSocket(u.toString());
      ws.binaryType = "arraybuffer";
      const link = new WsLink(ws, codec);
      h.link = link;
      ws.onopen = () => resolve(link);
      ws.onmessage = (ev) =>
        h.onmessage(typeof ev.data === "string" ? ev.data : codec.unpack(new Uint8Array(ev.data as ArrayBuffer)));
      ws.onclose = (ev) => {
        link.open = false;
        resolve(link);
        h.onclose(ev.code, ev.reason);
      };
      ws.onerror = () => {};
    });
  }

  send(text: string): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.codec.packed && text !== "ping") this.ws.send(this.codec.pack(text));
    else this.ws.send(text);
  }

  sendVolatile(text: string): void {
    this.send(text);
  }

  close(code: number, reason: string): void {
    this.open = false;
    this.ws.close(code, reason);
  }
}

/**
 * Datagrams larger than this go on the stream whatever the browser reports:
 * every QUIC path carries 1,200-byte packets, and Safari 26.4 reports a
 * `maxDatagramSize` it then refuses.
 */
export const SAFE_DATAGRAM = 1000;

export class WtLink implements Link {
  readonly kind = "webtransport" as const;
  open = true;
  private dgWriter: WritableStreamDefaultWriter<Uint8Array> | null;
  private readonly dgMax: number;
  private handlers: LinkHandlers | null = null;

  constructor(
    readonly wt: WebTransport,
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
    private readonly codec = new Codec(),
  ) {
    // Safari 26.4 has no `datagrams.writable`: volatile frames go on the stream.
    let dg: WritableStreamDefaultWriter<Uint8Array> | null = null;
    try {
      dg = wt.datagrams.writable ? wt.datagrams.writable.getWriter() : null;
    } catch {
      dg = null;
    }
    this.dgWriter = dg;
    const reported = (wt.datagrams as { maxDatagramSize?: number }).maxDatagramSize;
    this.dgMax = Math.min(reported || SAFE_DATAGRAM, SAFE_DATAGRAM);
  }

  get datagrams(): boolean {
    return this.dgWriter !== null;
  }

  /**
   * Opens a session (trusting the dev certificate's hash when `/cert-hash`
   * says the server runs on one) and its data stream; rejects after `timeoutMs`.
   */
  static async open(opts: LinkOptions, timeoutMs: number, h: LinkHandlers): Promise<WtLink> {
    const base = new URL(opts.url);
    const info = await (await fetch(new URL("/cert-hash", base))).json();
    const wtOpts: WebTransportOptions = {};
    if (info.dev) {
      const bytes = Uint8Array.from(atob(info.value), (c) => c.charCodeAt(0));
      wtOpts.serverCertificateHashes = [{ algorithm: "sha-256", value: bytes }];
    }
    const u = new URL(opts.wtUrl || info.url);
    if (opts.token) u.searchParams.set("token", opts.token);
    const codec = new Codec(opts.encoding);
    if (codec.packed) u.searchParams.set("encoding", "msgpack");
    const wt = new WebTransport(u.toString(), wtOpts);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("webtransport timed out")), timeoutMs);
    });
    try {
      await Promise.race([wt.ready, timeout]);
    } catch (e) {
      try {
        wt.close();
      } catch {
        // already failed
      }
      wt.closed.catch(() => {});
      throw e;
    } finally {
      clearTimeout(timer);
    }
    const stream = await wt.createBidirectionalStream();
    const link = new WtLink(wt, stream.writable.getWriter(), codec);
    link.handlers = h;
    h.link = link;
    void link.readFrames(stream.readable.getReader(), h);
    void link.readChannelStreams(h);
    void link.readDatagrams(h);
    wt.closed
      .then(
        (c) => h.onclose(c.closeCode || 1006, c.reason || ""),
        () => h.onclose(1006, "webtransport closed"),
      )
      .finally(() => {
        link.open = false;
      });
    return link;
  }

  send(text: string): void {
    this.writer.write(encodeFrameBytes(this.codec.pack(text))).catch(() => {});
  }

  sendVolatile(text: string): void {
    const body = this.codec.pack(text);
    const dg = this.dgWriter;
    if (!dg || body.length > this.dgMax) return this.send(text);
    dg.write(body).catch((e: unknown) => {
      // A refused datagram errors the writable for good: this frame and
      // every later one go on the stream (once the session is open).
      if (!this.open) return;
      if (this.dgWriter === dg) {
        this.dgWriter = null;
        this.handlers?.ondatagramsoff?.(`the browser refused a datagram (${String(e)})`);
      }
      this.send(text);
    });
  }

  private async readFrames(reader: ReadableStreamDefaultReader<Uint8Array>, h: LinkHandlers): Promise<void> {
    const frames = new FrameDecoder((b) => this.codec.unpack(b));
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const f of frames.push(value)) h.onmessage(f);
      }
    } catch {
      // the session closed; wt.closed reports it
    }
  }

  /** The server sends each channel's messages (inbox, each room) on a stream it opens for it. */
  private async readChannelStreams(h: LinkHandlers): Promise<void> {
    try {
      const streams = this.wt.incomingUnidirectionalStreams.getReader();
      for (;;) {
        const { value, done } = await streams.read();
        if (done) break;
        void this.readFrames((value as ReadableStream<Uint8Array>).getReader(), h);
      }
    } catch {
      // the session closed
    }
  }

  private async readDatagrams(h: LinkHandlers): Promise<void> {
    try {
      const reader = this.wt.datagrams.readable.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        h.onmessage(this.codec.unpack(value as Uint8Array), true);
      }
    } catch {
      // closed
    }
  }

  close(code: number, reason: string): void {
    this.open = false;
    try {
      this.wt.close({ closeCode: code, reason });
    } catch {
      // already closed
    }
  }
}

/**
 * The HTTP fallback (for networks that pass neither UDP nor WebSocket
 * upgrades): Server-Sent Events down (`GET /sse`, an `EventSource`, which
 * reconnects by itself and resumes with `Last-Event-ID`), `POST
 * /sse/{sessionId}` up, in order, frames that wait while a POST is out
 * going together as one array.
 */
export class SseLink implements Link {
  readonly kind = "sse" as const;
  readonly datagrams = false;
  open = true;
  private session = "";
  private token = "";
  private queue: string[] = [];
  private posting = false;

  constructor(
    private readonly es: EventSource,
    private readonly base: URL,
    private readonly codec = new Codec(),
  ) {}

  /** Resolves with the link once the server named the session, or with a closed link. */
  static open(opts: LinkOptions, h: LinkHandlers): Promise<SseLink> {
    return new Promise((resolve) => {
      const base = new URL(opts.url);
      const u = new URL("/sse", base);
      if (opts.token) u.searchParams.set("token", opts.token);
      const codec = new Codec(opts.encoding);
      if (codec.packed) u.searchParams.set("encoding", "msgpack");
      const es = new EventSource(u.toString(), { withCredentials: true });
      const link = new SseLink(es, base, codec);
      h.link = link;
      let started = false;
      es.addEventListener("session", (ev) => {
        if (started) {
          // The browser reconnected by itself and the server could not
          // resume (it restarted): a new session that nobody logged in.
          // End this link; the client opens another and logs in.
          link.end();
          h.onclose(1006, "the server lost the session");
          return;
        }
        const s = JSON.parse((ev as MessageEvent).data);
        link.session = s.sessionId;
        link.token = s.postToken;
        started = true;
        resolve(link);
      });
      // MessagePack frames come base64 in `data:` (the literal pong as is).
      es.onmessage = (ev) => {
        const data = ev.data as string;
        if (!codec.packed || data === "pong") return h.onmessage(data);
        h.onmessage(codec.unpack(Uint8Array.from(atob(data), (c) => c.charCodeAt(0))));
      };
      es.addEventListener("close", (ev) => {
        let code = 1006;
        let reason = "";
        try {
          ({ code, reason } = JSON.parse((ev as MessageEvent).data));
        } catch {
          // a close without its data
        }
        link.end();
        h.onclose(code, reason);
      });
      es.onerror = () => {
        // The browser retries by itself (and resumes); a stream it gave up
        // on, or one that never named its session, is closed.
        if (es.readyState === EventSource.CLOSED || !started) {
          link.end();
          resolve(link);
          if (started) h.onclose(1006, "event stream closed");
        }
      };
    });
  }

  private end(): void {
    this.open = false;
    this.es.close();
  }

  send(text: string): void {
    if (!this.open) return;
    this.queue.push(text);
    void this.pump();
  }

  sendVolatile(text: string): void {
    this.send(text);
  }

  /** One POST at a time, so frames arrive in the order sent. */
  private async pump(): Promise<void> {
    if (this.posting) return;
    this.posting = true;
    try {
      while (this.queue.length > 0 && this.open) {
        const frames = this.queue.splice(0);
        // A literal (`ping`) is not JSON: it goes alone; so does each
        // MessagePack frame (a POST holds one).
        const json = frames.filter((f) => f !== "ping");
        const bodies: (string | Uint8Array)[] = this.codec.packed
          ? frames.map((f) => (f === "ping" ? f : this.codec.pack(f)))
          : frames.length === json.length
            ? [`[${json.join(",")}]`]
            : frames;
        const type = this.codec.packed ? "application/msgpack" : "application/json";
        for (const body of bodies) {
          const r = await fetch(new URL(`/sse/${encodeURIComponent(this.session)}`, this.base), {
            method: "POST",
            headers: { "content-type": type, "x-rtgate-post-token": this.token },
            body: body as BodyInit,
            credentials: "include",
          });
          if (r.status === 404 || r.status === 403) {
            this.end();
            return;
          }
        }
      }
    } catch {
      // the network failed: the event stream's error ends the link
    } finally {
      this.posting = false;
    }
  }

  close(_code: number, _reason: string): void {
    this.end();
  }
}
