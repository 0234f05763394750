// The one error type the client rejects with: a server error (its code and
// reason) or a local one.

export class RtgateError extends Error {
  /**
   * The server's error code (400, 403, 429, ...), a close code (4401, 4403),
   * or a local one: 408 (no answer within the timeout), 410 (the client was
   * closed), 0 (not connected for a volatile-free request).
   */
  readonly code: number;
  readonly clientMsgId?: string;

  constructor(code: number, reason: string, clientMsgId?: string) {
    super(reason);
    this.name = "RtgateError";
    this.code = code;
    this.clientMsgId = clientMsgId;
  }
}
