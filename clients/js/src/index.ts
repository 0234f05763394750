// rtgate-client: the browser client for rtgate.

export { RtgateClient, tokenSubject } from "./client.js";
export { RtgateError } from "./errors.js";
export { Backoff } from "./backoff.js";
export { DeliveryFilter } from "./dedupe.js";
export { encodeFrame, FrameDecoder } from "./framing.js";
export { Outbox } from "./outbox.js";
export { IndexedDbStore, MemoryStore, PositionTracker } from "./positions.js";
export type { PositionStore, Positions } from "./positions.js";
export { TransportMemory } from "./memory.js";
export { DeliveredReceipts, receiptFrames } from "./receipts.js";
export { base64UrlBytes, browserSubscription } from "./push.js";
export type { EnablePushOptions } from "./push.js";
export type * from "./types.js";
