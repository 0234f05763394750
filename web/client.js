// rtgate browser client, built from clients/js (npm run build); do not edit.
// Source, types and docs: clients/js. License: MIT OR Apache-2.0.
"use strict";
(() => {
  var __defProp = Object.defineProperty;
  var __export = (target, all) => {
    for (var name in all)
      __defProp(target, name, { get: all[name], enumerable: true });
  };

  // src/index.ts
  var index_exports = {};
  __export(index_exports, {
    Backoff: () => Backoff,
    DeliveredReceipts: () => DeliveredReceipts,
    DeliveryFilter: () => DeliveryFilter,
    FrameDecoder: () => FrameDecoder,
    IndexedDbStore: () => IndexedDbStore,
    MemoryStore: () => MemoryStore,
    Outbox: () => Outbox,
    PositionTracker: () => PositionTracker,
    RtgateClient: () => RtgateClient,
    RtgateError: () => RtgateError,
    TransportMemory: () => TransportMemory,
    base64UrlBytes: () => base64UrlBytes,
    browserSubscription: () => browserSubscription,
    encodeFrame: () => encodeFrame,
    receiptFrames: () => receiptFrames,
    tokenSubject: () => tokenSubject
  });

  // src/backoff.ts
  var Backoff = class {
    constructor(firstMs = 500, maxMs = 15e3, random = Math.random) {
      this.firstMs = firstMs;
      this.maxMs = maxMs;
      this.random = random;
      this.attempt = 0;
    }
    /** The next delay: uniform in [0, min(max, first * 2^attempt)], at least 50 ms. */
    next() {
      const ceiling = Math.min(this.maxMs, this.firstMs * 2 ** Math.min(this.attempt, 30));
      this.attempt += 1;
      return Math.max(50, Math.round(this.random() * ceiling));
    }
    /** After a good login. */
    reset() {
      this.attempt = 0;
    }
    get attempts() {
      return this.attempt;
    }
  };

  // src/copies.ts
  var MAX_HELD = 256;
  var EarlyCopies = class {
    /** `positionOf` answers a channel's last delivered seq, if known. */
    constructor(positionOf) {
      this.positionOf = positionOf;
      this.held = /* @__PURE__ */ new Map();
    }
    get size() {
      return this.held.size;
    }
    has(msgId) {
      return this.held.has(msgId);
    }
    /** Takes back a held copy (its stream copy came). */
    take(msgId) {
      const m = this.held.get(msgId);
      this.held.delete(msgId);
      return m;
    }
    /** Holds `m` if it came ahead of its channel (true); `deliver` gets the
     * oldest held copy when there is no room left. */
    hold(m, deliver) {
      if (m.seq === void 0 || m.volatile || !m.msgId) return false;
      const at = this.positionOf(m);
      if (at === void 0 || m.seq <= at + 1) return false;
      if (this.held.size >= MAX_HELD) {
        const [id, oldest] = this.held.entries().next().value;
        this.held.delete(id);
        deliver(oldest);
      }
      this.held.set(m.msgId, m);
      return true;
    }
    /** Hands `deliver` the held copies that are now next in their channel, in seq order. */
    release(deliver) {
      for (let again = true; again && this.held.size > 0; ) {
        again = false;
        for (const [id, m] of this.held) {
          const at = this.positionOf(m);
          if (at === void 0 || m.seq <= at + 1) {
            this.held.delete(id);
            deliver(m);
            again = true;
          }
        }
      }
    }
  };

  // src/dedupe.ts
  var BoundedSet = class {
    constructor(limit) {
      this.limit = limit;
      this.items = /* @__PURE__ */ new Set();
    }
    has(v) {
      return this.items.has(v);
    }
    add(v) {
      this.items.add(v);
      if (this.items.size > this.limit) this.items.delete(this.items.values().next().value);
    }
    get size() {
      return this.items.size;
    }
  };
  var DeliveryFilter = class {
    constructor() {
      this.seen = new BoundedSet(5e3);
      this.latest = /* @__PURE__ */ new Map();
    }
    check(m) {
      if (m.msgId && this.seen.has(m.msgId)) return "duplicate";
      if (m.volatile && m.latest && m.msgId) {
        const k = [m.sendUserId, m.roomId ?? "", m.receivedUserId ?? "", m.latest].join("\0");
        const newest = this.latest.get(k);
        if (newest !== void 0 && m.msgId <= newest) return "stale";
        this.latest.delete(k);
        this.latest.set(k, m.msgId);
        if (this.latest.size > 1e3) this.latest.delete(this.latest.keys().next().value);
      }
      if (m.msgId) this.seen.add(m.msgId);
      return "new";
    }
  };

  // src/emitter.ts
  var Emitter = class {
    constructor() {
      this.listeners = {};
    }
    /** Adds a listener; returns a function that removes it. */
    on(event, fn) {
      (this.listeners[event] ??= []).push(fn);
      return () => this.off(event, fn);
    }
    off(event, fn) {
      const list = this.listeners[event];
      if (list) this.listeners[event] = list.filter((f) => f !== fn);
    }
    /** Calls every listener; one that throws is reported and does not stop the others. */
    emit(event, arg) {
      for (const fn of this.listeners[event] ?? []) {
        try {
          fn(arg);
        } catch (e) {
          console.error(e);
        }
      }
    }
    removeAll() {
      this.listeners = {};
    }
  };

  // src/errors.ts
  var RtgateError = class extends Error {
    constructor(code, reason, clientMsgId) {
      super(reason);
      this.name = "RtgateError";
      this.code = code;
      this.clientMsgId = clientMsgId;
    }
  };

  // node_modules/@msgpack/msgpack/dist.esm/utils/utf8.mjs
  function utf8Count(str) {
    const strLength = str.length;
    let byteLength = 0;
    let pos = 0;
    while (pos < strLength) {
      let value = str.charCodeAt(pos++);
      if ((value & 4294967168) === 0) {
        byteLength++;
        continue;
      } else if ((value & 4294965248) === 0) {
        byteLength += 2;
      } else {
        if (value >= 55296 && value <= 56319) {
          if (pos < strLength) {
            const extra = str.charCodeAt(pos);
            if ((extra & 64512) === 56320) {
              ++pos;
              value = ((value & 1023) << 10) + (extra & 1023) + 65536;
            }
          }
        }
        if ((value & 4294901760) === 0) {
          byteLength += 3;
        } else {
          byteLength += 4;
        }
      }
    }
    return byteLength;
  }
  function utf8EncodeJs(str, output, outputOffset) {
    const strLength = str.length;
    let offset = outputOffset;
    let pos = 0;
    while (pos < strLength) {
      let value = str.charCodeAt(pos++);
      if ((value & 4294967168) === 0) {
        output[offset++] = value;
        continue;
      } else if ((value & 4294965248) === 0) {
        output[offset++] = value >> 6 & 31 | 192;
      } else {
        if (value >= 55296 && value <= 56319) {
          if (pos < strLength) {
            const extra = str.charCodeAt(pos);
            if ((extra & 64512) === 56320) {
              ++pos;
              value = ((value & 1023) << 10) + (extra & 1023) + 65536;
            }
          }
        }
        if ((value & 4294901760) === 0) {
          output[offset++] = value >> 12 & 15 | 224;
          output[offset++] = value >> 6 & 63 | 128;
        } else {
          output[offset++] = value >> 18 & 7 | 240;
          output[offset++] = value >> 12 & 63 | 128;
          output[offset++] = value >> 6 & 63 | 128;
        }
      }
      output[offset++] = value & 63 | 128;
    }
  }
  var sharedTextEncoder = new TextEncoder();
  var TEXT_ENCODER_THRESHOLD = 50;
  function utf8EncodeTE(str, output, outputOffset) {
    sharedTextEncoder.encodeInto(str, output.subarray(outputOffset));
  }
  function utf8Encode(str, output, outputOffset) {
    if (str.length > TEXT_ENCODER_THRESHOLD) {
      utf8EncodeTE(str, output, outputOffset);
    } else {
      utf8EncodeJs(str, output, outputOffset);
    }
  }
  var CHUNK_SIZE = 4096;
  function utf8DecodeJs(bytes, inputOffset, byteLength) {
    let offset = inputOffset;
    const end = offset + byteLength;
    const units = [];
    let result = "";
    while (offset < end) {
      const byte1 = bytes[offset++];
      if ((byte1 & 128) === 0) {
        units.push(byte1);
      } else if ((byte1 & 224) === 192) {
        const byte2 = bytes[offset++] & 63;
        units.push((byte1 & 31) << 6 | byte2);
      } else if ((byte1 & 240) === 224) {
        const byte2 = bytes[offset++] & 63;
        const byte3 = bytes[offset++] & 63;
        units.push((byte1 & 31) << 12 | byte2 << 6 | byte3);
      } else if ((byte1 & 248) === 240) {
        const byte2 = bytes[offset++] & 63;
        const byte3 = bytes[offset++] & 63;
        const byte4 = bytes[offset++] & 63;
        let unit = (byte1 & 7) << 18 | byte2 << 12 | byte3 << 6 | byte4;
        if (unit > 65535) {
          unit -= 65536;
          units.push(unit >>> 10 & 1023 | 55296);
          unit = 56320 | unit & 1023;
        }
        units.push(unit);
      } else {
        units.push(byte1);
      }
      if (units.length >= CHUNK_SIZE) {
        result += String.fromCharCode(...units);
        units.length = 0;
      }
    }
    if (units.length > 0) {
      result += String.fromCharCode(...units);
    }
    return result;
  }
  var sharedTextDecoder = new TextDecoder();
  var TEXT_DECODER_THRESHOLD = 200;
  function utf8DecodeTD(bytes, inputOffset, byteLength) {
    const stringBytes = bytes.subarray(inputOffset, inputOffset + byteLength);
    return sharedTextDecoder.decode(stringBytes);
  }
  function utf8Decode(bytes, inputOffset, byteLength) {
    if (byteLength > TEXT_DECODER_THRESHOLD) {
      return utf8DecodeTD(bytes, inputOffset, byteLength);
    } else {
      return utf8DecodeJs(bytes, inputOffset, byteLength);
    }
  }

  // node_modules/@msgpack/msgpack/dist.esm/ExtData.mjs
  var ExtData = class {
    type;
    data;
    constructor(type, data) {
      this.type = type;
      this.data = data;
    }
  };

  // node_modules/@msgpack/msgpack/dist.esm/DecodeError.mjs
  var DecodeError = class _DecodeError extends Error {
    constructor(message) {
      super(message);
      const proto = Object.create(_DecodeError.prototype);
      Object.setPrototypeOf(this, proto);
      Object.defineProperty(this, "name", {
        configurable: true,
        enumerable: false,
        value: _DecodeError.name
      });
    }
  };

  // node_modules/@msgpack/msgpack/dist.esm/utils/int.mjs
  var UINT32_MAX = 4294967295;
  function setUint64(view, offset, value) {
    const high = value / 4294967296;
    const low = value;
    view.setUint32(offset, high);
    view.setUint32(offset + 4, low);
  }
  function setInt64(view, offset, value) {
    const high = Math.floor(value / 4294967296);
    const low = value;
    view.setUint32(offset, high);
    view.setUint32(offset + 4, low);
  }
  function getInt64(view, offset) {
    const high = view.getInt32(offset);
    const low = view.getUint32(offset + 4);
    return high * 4294967296 + low;
  }
  function getUint64(view, offset) {
    const high = view.getUint32(offset);
    const low = view.getUint32(offset + 4);
    return high * 4294967296 + low;
  }

  // node_modules/@msgpack/msgpack/dist.esm/timestamp.mjs
  var EXT_TIMESTAMP = -1;
  var TIMESTAMP32_MAX_SEC = 4294967296 - 1;
  var TIMESTAMP64_MAX_SEC = 17179869184 - 1;
  function encodeTimeSpecToTimestamp({ sec, nsec }) {
    if (sec >= 0 && nsec >= 0 && sec <= TIMESTAMP64_MAX_SEC) {
      if (nsec === 0 && sec <= TIMESTAMP32_MAX_SEC) {
        const rv = new Uint8Array(4);
        const view = new DataView(rv.buffer);
        view.setUint32(0, sec);
        return rv;
      } else {
        const secHigh = sec / 4294967296;
        const secLow = sec & 4294967295;
        const rv = new Uint8Array(8);
        const view = new DataView(rv.buffer);
        view.setUint32(0, nsec << 2 | secHigh & 3);
        view.setUint32(4, secLow);
        return rv;
      }
    } else {
      const rv = new Uint8Array(12);
      const view = new DataView(rv.buffer);
      view.setUint32(0, nsec);
      setInt64(view, 4, sec);
      return rv;
    }
  }
  function encodeDateToTimeSpec(date) {
    const msec = date.getTime();
    const sec = Math.floor(msec / 1e3);
    const nsec = (msec - sec * 1e3) * 1e6;
    const nsecInSec = Math.floor(nsec / 1e9);
    return {
      sec: sec + nsecInSec,
      nsec: nsec - nsecInSec * 1e9
    };
  }
  function encodeTimestampExtension(object) {
    if (object instanceof Date) {
      const timeSpec = encodeDateToTimeSpec(object);
      return encodeTimeSpecToTimestamp(timeSpec);
    } else {
      return null;
    }
  }
  function decodeTimestampToTimeSpec(data) {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    switch (data.byteLength) {
      case 4: {
        const sec = view.getUint32(0);
        const nsec = 0;
        return { sec, nsec };
      }
      case 8: {
        const nsec30AndSecHigh2 = view.getUint32(0);
        const secLow32 = view.getUint32(4);
        const sec = (nsec30AndSecHigh2 & 3) * 4294967296 + secLow32;
        const nsec = nsec30AndSecHigh2 >>> 2;
        return { sec, nsec };
      }
      case 12: {
        const sec = getInt64(view, 4);
        const nsec = view.getUint32(0);
        return { sec, nsec };
      }
      default:
        throw new DecodeError(`Unrecognized data size for timestamp (expected 4, 8, or 12): ${data.length}`);
    }
  }
  function decodeTimestampExtension(data) {
    const timeSpec = decodeTimestampToTimeSpec(data);
    return new Date(timeSpec.sec * 1e3 + timeSpec.nsec / 1e6);
  }
  var timestampExtension = {
    type: EXT_TIMESTAMP,
    encode: encodeTimestampExtension,
    decode: decodeTimestampExtension
  };

  // node_modules/@msgpack/msgpack/dist.esm/ExtensionCodec.mjs
  var ExtensionCodec = class _ExtensionCodec {
    static defaultCodec = new _ExtensionCodec();
    // ensures ExtensionCodecType<X> matches ExtensionCodec<X>
    // this will make type errors a lot more clear
    // eslint-disable-next-line @typescript-eslint/naming-convention
    __brand;
    // built-in extensions
    builtInEncoders = [];
    builtInDecoders = [];
    // custom extensions
    encoders = [];
    decoders = [];
    constructor() {
      this.register(timestampExtension);
    }
    register({ type, encode: encode2, decode: decode2 }) {
      if (type >= 0) {
        this.encoders[type] = encode2;
        this.decoders[type] = decode2;
      } else {
        const index = -1 - type;
        this.builtInEncoders[index] = encode2;
        this.builtInDecoders[index] = decode2;
      }
    }
    tryToEncode(object, context) {
      for (let i = 0; i < this.builtInEncoders.length; i++) {
        const encodeExt = this.builtInEncoders[i];
        if (encodeExt != null) {
          const data = encodeExt(object, context);
          if (data != null) {
            const type = -1 - i;
            return new ExtData(type, data);
          }
        }
      }
      for (let i = 0; i < this.encoders.length; i++) {
        const encodeExt = this.encoders[i];
        if (encodeExt != null) {
          const data = encodeExt(object, context);
          if (data != null) {
            const type = i;
            return new ExtData(type, data);
          }
        }
      }
      if (object instanceof ExtData) {
        return object;
      }
      return null;
    }
    decode(data, type, context) {
      const decodeExt = type < 0 ? this.builtInDecoders[-1 - type] : this.decoders[type];
      if (decodeExt) {
        return decodeExt(data, type, context);
      } else {
        return new ExtData(type, data);
      }
    }
  };

  // node_modules/@msgpack/msgpack/dist.esm/utils/typedArrays.mjs
  function isArrayBufferLike(buffer) {
    return buffer instanceof ArrayBuffer || typeof SharedArrayBuffer !== "undefined" && buffer instanceof SharedArrayBuffer;
  }
  function ensureUint8Array(buffer) {
    if (buffer instanceof Uint8Array) {
      return buffer;
    } else if (ArrayBuffer.isView(buffer)) {
      return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    } else if (isArrayBufferLike(buffer)) {
      return new Uint8Array(buffer);
    } else {
      return Uint8Array.from(buffer);
    }
  }

  // node_modules/@msgpack/msgpack/dist.esm/Encoder.mjs
  var DEFAULT_MAX_DEPTH = 100;
  var DEFAULT_INITIAL_BUFFER_SIZE = 2048;
  var Encoder = class _Encoder {
    extensionCodec;
    context;
    useBigInt64;
    maxDepth;
    initialBufferSize;
    sortKeys;
    forceFloat32;
    ignoreUndefined;
    forceIntegerToFloat;
    pos;
    view;
    bytes;
    entered = false;
    constructor(options) {
      this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
      this.context = options?.context;
      this.useBigInt64 = options?.useBigInt64 ?? false;
      this.maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
      this.initialBufferSize = options?.initialBufferSize ?? DEFAULT_INITIAL_BUFFER_SIZE;
      this.sortKeys = options?.sortKeys ?? false;
      this.forceFloat32 = options?.forceFloat32 ?? false;
      this.ignoreUndefined = options?.ignoreUndefined ?? false;
      this.forceIntegerToFloat = options?.forceIntegerToFloat ?? false;
      this.pos = 0;
      this.view = new DataView(new ArrayBuffer(this.initialBufferSize));
      this.bytes = new Uint8Array(this.view.buffer);
    }
    clone() {
      return new _Encoder({
        extensionCodec: this.extensionCodec,
        context: this.context,
        useBigInt64: this.useBigInt64,
        maxDepth: this.maxDepth,
        initialBufferSize: this.initialBufferSize,
        sortKeys: this.sortKeys,
        forceFloat32: this.forceFloat32,
        ignoreUndefined: this.ignoreUndefined,
        forceIntegerToFloat: this.forceIntegerToFloat
      });
    }
    reinitializeState() {
      this.pos = 0;
    }
    /**
     * This is almost equivalent to {@link Encoder#encode}, but it returns an reference of the encoder's internal buffer and thus much faster than {@link Encoder#encode}.
     *
     * @returns Encodes the object and returns a shared reference the encoder's internal buffer.
     */
    encodeSharedRef(object) {
      if (this.entered) {
        const instance = this.clone();
        return instance.encodeSharedRef(object);
      }
      try {
        this.entered = true;
        this.reinitializeState();
        this.doEncode(object, 1);
        return this.bytes.subarray(0, this.pos);
      } finally {
        this.entered = false;
      }
    }
    /**
     * @returns Encodes the object and returns a copy of the encoder's internal buffer.
     */
    encode(object) {
      if (this.entered) {
        const instance = this.clone();
        return instance.encode(object);
      }
      try {
        this.entered = true;
        this.reinitializeState();
        this.doEncode(object, 1);
        return this.bytes.slice(0, this.pos);
      } finally {
        this.entered = false;
      }
    }
    doEncode(object, depth) {
      if (depth > this.maxDepth) {
        throw new Error(`Too deep objects in depth ${depth}`);
      }
      if (object == null) {
        this.encodeNil();
      } else if (typeof object === "boolean") {
        this.encodeBoolean(object);
      } else if (typeof object === "number") {
        if (!this.forceIntegerToFloat) {
          this.encodeNumber(object);
        } else {
          this.encodeNumberAsFloat(object);
        }
      } else if (typeof object === "string") {
        this.encodeString(object);
      } else if (this.useBigInt64 && typeof object === "bigint") {
        this.encodeBigInt64(object);
      } else {
        this.encodeObject(object, depth);
      }
    }
    ensureBufferSizeToWrite(sizeToWrite) {
      const requiredSize = this.pos + sizeToWrite;
      if (this.view.byteLength < requiredSize) {
        this.resizeBuffer(requiredSize * 2);
      }
    }
    resizeBuffer(newSize) {
      const newBuffer = new ArrayBuffer(newSize);
      const newBytes = new Uint8Array(newBuffer);
      const newView = new DataView(newBuffer);
      newBytes.set(this.bytes);
      this.view = newView;
      this.bytes = newBytes;
    }
    encodeNil() {
      this.writeU8(192);
    }
    encodeBoolean(object) {
      if (object === false) {
        this.writeU8(194);
      } else {
        this.writeU8(195);
      }
    }
    encodeNumber(object) {
      if (!this.forceIntegerToFloat && Number.isSafeInteger(object)) {
        if (object >= 0) {
          if (object < 128) {
            this.writeU8(object);
          } else if (object < 256) {
            this.writeU8(204);
            this.writeU8(object);
          } else if (object < 65536) {
            this.writeU8(205);
            this.writeU16(object);
          } else if (object < 4294967296) {
            this.writeU8(206);
            this.writeU32(object);
          } else if (!this.useBigInt64) {
            this.writeU8(207);
            this.writeU64(object);
          } else {
            this.encodeNumberAsFloat(object);
          }
        } else {
          if (object >= -32) {
            this.writeU8(224 | object + 32);
          } else if (object >= -128) {
            this.writeU8(208);
            this.writeI8(object);
          } else if (object >= -32768) {
            this.writeU8(209);
            this.writeI16(object);
          } else if (object >= -2147483648) {
            this.writeU8(210);
            this.writeI32(object);
          } else if (!this.useBigInt64) {
            this.writeU8(211);
            this.writeI64(object);
          } else {
            this.encodeNumberAsFloat(object);
          }
        }
      } else {
        this.encodeNumberAsFloat(object);
      }
    }
    encodeNumberAsFloat(object) {
      if (this.forceFloat32) {
        this.writeU8(202);
        this.writeF32(object);
      } else {
        this.writeU8(203);
        this.writeF64(object);
      }
    }
    encodeBigInt64(object) {
      if (object >= BigInt(0)) {
        this.writeU8(207);
        this.writeBigUint64(object);
      } else {
        this.writeU8(211);
        this.writeBigInt64(object);
      }
    }
    writeStringHeader(byteLength) {
      if (byteLength < 32) {
        this.writeU8(160 + byteLength);
      } else if (byteLength < 256) {
        this.writeU8(217);
        this.writeU8(byteLength);
      } else if (byteLength < 65536) {
        this.writeU8(218);
        this.writeU16(byteLength);
      } else if (byteLength < 4294967296) {
        this.writeU8(219);
        this.writeU32(byteLength);
      } else {
        throw new Error(`Too long string: ${byteLength} bytes in UTF-8`);
      }
    }
    encodeString(object) {
      const maxHeaderSize = 1 + 4;
      const byteLength = utf8Count(object);
      this.ensureBufferSizeToWrite(maxHeaderSize + byteLength);
      this.writeStringHeader(byteLength);
      utf8Encode(object, this.bytes, this.pos);
      this.pos += byteLength;
    }
    encodeObject(object, depth) {
      const ext = this.extensionCodec.tryToEncode(object, this.context);
      if (ext != null) {
        this.encodeExtension(ext);
      } else if (Array.isArray(object)) {
        this.encodeArray(object, depth);
      } else if (ArrayBuffer.isView(object)) {
        this.encodeBinary(object);
      } else if (typeof object === "object") {
        this.encodeMap(object, depth);
      } else {
        throw new Error(`Unrecognized object: ${Object.prototype.toString.apply(object)}`);
      }
    }
    encodeBinary(object) {
      const size = object.byteLength;
      if (size < 256) {
        this.writeU8(196);
        this.writeU8(size);
      } else if (size < 65536) {
        this.writeU8(197);
        this.writeU16(size);
      } else if (size < 4294967296) {
        this.writeU8(198);
        this.writeU32(size);
      } else {
        throw new Error(`Too large binary: ${size}`);
      }
      const bytes = ensureUint8Array(object);
      this.writeU8a(bytes);
    }
    encodeArray(object, depth) {
      const size = object.length;
      if (size < 16) {
        this.writeU8(144 + size);
      } else if (size < 65536) {
        this.writeU8(220);
        this.writeU16(size);
      } else if (size < 4294967296) {
        this.writeU8(221);
        this.writeU32(size);
      } else {
        throw new Error(`Too large array: ${size}`);
      }
      for (const item of object) {
        this.doEncode(item, depth + 1);
      }
    }
    countWithoutUndefined(object, keys) {
      let count = 0;
      for (const key of keys) {
        if (object[key] !== void 0) {
          count++;
        }
      }
      return count;
    }
    encodeMap(object, depth) {
      const keys = Object.keys(object);
      if (this.sortKeys) {
        keys.sort();
      }
      const size = this.ignoreUndefined ? this.countWithoutUndefined(object, keys) : keys.length;
      if (size < 16) {
        this.writeU8(128 + size);
      } else if (size < 65536) {
        this.writeU8(222);
        this.writeU16(size);
      } else if (size < 4294967296) {
        this.writeU8(223);
        this.writeU32(size);
      } else {
        throw new Error(`Too large map object: ${size}`);
      }
      for (const key of keys) {
        const value = object[key];
        if (!(this.ignoreUndefined && value === void 0)) {
          this.encodeString(key);
          this.doEncode(value, depth + 1);
        }
      }
    }
    encodeExtension(ext) {
      if (typeof ext.data === "function") {
        const data = ext.data(this.pos + 6);
        const size2 = data.length;
        if (size2 >= 4294967296) {
          throw new Error(`Too large extension object: ${size2}`);
        }
        this.writeU8(201);
        this.writeU32(size2);
        this.writeI8(ext.type);
        this.writeU8a(data);
        return;
      }
      const size = ext.data.length;
      if (size === 1) {
        this.writeU8(212);
      } else if (size === 2) {
        this.writeU8(213);
      } else if (size === 4) {
        this.writeU8(214);
      } else if (size === 8) {
        this.writeU8(215);
      } else if (size === 16) {
        this.writeU8(216);
      } else if (size < 256) {
        this.writeU8(199);
        this.writeU8(size);
      } else if (size < 65536) {
        this.writeU8(200);
        this.writeU16(size);
      } else if (size < 4294967296) {
        this.writeU8(201);
        this.writeU32(size);
      } else {
        throw new Error(`Too large extension object: ${size}`);
      }
      this.writeI8(ext.type);
      this.writeU8a(ext.data);
    }
    writeU8(value) {
      this.ensureBufferSizeToWrite(1);
      this.view.setUint8(this.pos, value);
      this.pos++;
    }
    writeU8a(values) {
      const size = values.length;
      this.ensureBufferSizeToWrite(size);
      this.bytes.set(values, this.pos);
      this.pos += size;
    }
    writeI8(value) {
      this.ensureBufferSizeToWrite(1);
      this.view.setInt8(this.pos, value);
      this.pos++;
    }
    writeU16(value) {
      this.ensureBufferSizeToWrite(2);
      this.view.setUint16(this.pos, value);
      this.pos += 2;
    }
    writeI16(value) {
      this.ensureBufferSizeToWrite(2);
      this.view.setInt16(this.pos, value);
      this.pos += 2;
    }
    writeU32(value) {
      this.ensureBufferSizeToWrite(4);
      this.view.setUint32(this.pos, value);
      this.pos += 4;
    }
    writeI32(value) {
      this.ensureBufferSizeToWrite(4);
      this.view.setInt32(this.pos, value);
      this.pos += 4;
    }
    writeF32(value) {
      this.ensureBufferSizeToWrite(4);
      this.view.setFloat32(this.pos, value);
      this.pos += 4;
    }
    writeF64(value) {
      this.ensureBufferSizeToWrite(8);
      this.view.setFloat64(this.pos, value);
      this.pos += 8;
    }
    writeU64(value) {
      this.ensureBufferSizeToWrite(8);
      setUint64(this.view, this.pos, value);
      this.pos += 8;
    }
    writeI64(value) {
      this.ensureBufferSizeToWrite(8);
      setInt64(this.view, this.pos, value);
      this.pos += 8;
    }
    writeBigUint64(value) {
      this.ensureBufferSizeToWrite(8);
      this.view.setBigUint64(this.pos, value);
      this.pos += 8;
    }
    writeBigInt64(value) {
      this.ensureBufferSizeToWrite(8);
      this.view.setBigInt64(this.pos, value);
      this.pos += 8;
    }
  };

  // node_modules/@msgpack/msgpack/dist.esm/encode.mjs
  function encode(value, options) {
    const encoder2 = new Encoder(options);
    return encoder2.encodeSharedRef(value);
  }

  // node_modules/@msgpack/msgpack/dist.esm/utils/prettyByte.mjs
  function prettyByte(byte) {
    return `${byte < 0 ? "-" : ""}0x${Math.abs(byte).toString(16).padStart(2, "0")}`;
  }

  // node_modules/@msgpack/msgpack/dist.esm/CachedKeyDecoder.mjs
  var DEFAULT_MAX_KEY_LENGTH = 16;
  var DEFAULT_MAX_LENGTH_PER_KEY = 16;
  var CachedKeyDecoder = class {
    hit = 0;
    miss = 0;
    caches;
    maxKeyLength;
    maxLengthPerKey;
    constructor(maxKeyLength = DEFAULT_MAX_KEY_LENGTH, maxLengthPerKey = DEFAULT_MAX_LENGTH_PER_KEY) {
      this.maxKeyLength = maxKeyLength;
      this.maxLengthPerKey = maxLengthPerKey;
      this.caches = [];
      for (let i = 0; i < this.maxKeyLength; i++) {
        this.caches.push([]);
      }
    }
    canBeCached(byteLength) {
      return byteLength > 0 && byteLength <= this.maxKeyLength;
    }
    find(bytes, inputOffset, byteLength) {
      const records = this.caches[byteLength - 1];
      FIND_CHUNK: for (const record of records) {
        const recordBytes = record.bytes;
        for (let j = 0; j < byteLength; j++) {
          if (recordBytes[j] !== bytes[inputOffset + j]) {
            continue FIND_CHUNK;
          }
        }
        return record.str;
      }
      return null;
    }
    store(bytes, value) {
      const records = this.caches[bytes.length - 1];
      const record = { bytes, str: value };
      if (records.length >= this.maxLengthPerKey) {
        records[Math.random() * records.length | 0] = record;
      } else {
        records.push(record);
      }
    }
    decode(bytes, inputOffset, byteLength) {
      const cachedValue = this.find(bytes, inputOffset, byteLength);
      if (cachedValue != null) {
        this.hit++;
        return cachedValue;
      }
      this.miss++;
      const str = utf8DecodeJs(bytes, inputOffset, byteLength);
      const slicedCopyOfBytes = Uint8Array.prototype.slice.call(bytes, inputOffset, inputOffset + byteLength);
      this.store(slicedCopyOfBytes, str);
      return str;
    }
  };

  // node_modules/@msgpack/msgpack/dist.esm/Decoder.mjs
  var STATE_ARRAY = "array";
  var STATE_MAP_KEY = "map_key";
  var STATE_MAP_VALUE = "map_value";
  var mapKeyConverter = (key) => {
    if (typeof key === "string" || typeof key === "number") {
      return key;
    }
    throw new DecodeError("The type of key must be string or number but " + typeof key);
  };
  var StackPool = class {
    stack = [];
    stackHeadPosition = -1;
    get length() {
      return this.stackHeadPosition + 1;
    }
    top() {
      return this.stack[this.stackHeadPosition];
    }
    pushArrayState(size) {
      const state = this.getUninitializedStateFromPool();
      state.type = STATE_ARRAY;
      state.position = 0;
      state.size = size;
      state.array = new Array(size);
    }
    pushMapState(size) {
      const state = this.getUninitializedStateFromPool();
      state.type = STATE_MAP_KEY;
      state.readCount = 0;
      state.size = size;
      state.map = {};
    }
    getUninitializedStateFromPool() {
      this.stackHeadPosition++;
      if (this.stackHeadPosition === this.stack.length) {
        const partialState = {
          type: void 0,
          size: 0,
          array: void 0,
          position: 0,
          readCount: 0,
          map: void 0,
          key: null
        };
        this.stack.push(partialState);
      }
      return this.stack[this.stackHeadPosition];
    }
    release(state) {
      const topStackState = this.stack[this.stackHeadPosition];
      if (topStackState !== state) {
        throw new Error("Invalid stack state. Released state is not on top of the stack.");
      }
      if (state.type === STATE_ARRAY) {
        const partialState = state;
        partialState.size = 0;
        partialState.array = void 0;
        partialState.position = 0;
        partialState.type = void 0;
      }
      if (state.type === STATE_MAP_KEY || state.type === STATE_MAP_VALUE) {
        const partialState = state;
        partialState.size = 0;
        partialState.map = void 0;
        partialState.readCount = 0;
        partialState.type = void 0;
      }
      this.stackHeadPosition--;
    }
    reset() {
      this.stack.length = 0;
      this.stackHeadPosition = -1;
    }
  };
  var HEAD_BYTE_REQUIRED = -1;
  var EMPTY_VIEW = new DataView(new ArrayBuffer(0));
  var EMPTY_BYTES = new Uint8Array(EMPTY_VIEW.buffer);
  try {
    EMPTY_VIEW.getInt8(0);
  } catch (e) {
    if (!(e instanceof RangeError)) {
      throw new Error("This module is not supported in the current JavaScript engine because DataView does not throw RangeError on out-of-bounds access");
    }
  }
  var MORE_DATA = new RangeError("Insufficient data");
  var sharedCachedKeyDecoder = new CachedKeyDecoder();
  var Decoder = class _Decoder {
    extensionCodec;
    context;
    useBigInt64;
    rawStrings;
    maxStrLength;
    maxBinLength;
    maxArrayLength;
    maxMapLength;
    maxExtLength;
    keyDecoder;
    mapKeyConverter;
    totalPos = 0;
    pos = 0;
    view = EMPTY_VIEW;
    bytes = EMPTY_BYTES;
    headByte = HEAD_BYTE_REQUIRED;
    stack = new StackPool();
    entered = false;
    constructor(options) {
      this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
      this.context = options?.context;
      this.useBigInt64 = options?.useBigInt64 ?? false;
      this.rawStrings = options?.rawStrings ?? false;
      this.maxStrLength = options?.maxStrLength ?? UINT32_MAX;
      this.maxBinLength = options?.maxBinLength ?? UINT32_MAX;
      this.maxArrayLength = options?.maxArrayLength ?? UINT32_MAX;
      this.maxMapLength = options?.maxMapLength ?? UINT32_MAX;
      this.maxExtLength = options?.maxExtLength ?? UINT32_MAX;
      this.keyDecoder = options?.keyDecoder !== void 0 ? options.keyDecoder : sharedCachedKeyDecoder;
      this.mapKeyConverter = options?.mapKeyConverter ?? mapKeyConverter;
    }
    clone() {
      return new _Decoder({
        extensionCodec: this.extensionCodec,
        context: this.context,
        useBigInt64: this.useBigInt64,
        rawStrings: this.rawStrings,
        maxStrLength: this.maxStrLength,
        maxBinLength: this.maxBinLength,
        maxArrayLength: this.maxArrayLength,
        maxMapLength: this.maxMapLength,
        maxExtLength: this.maxExtLength,
        keyDecoder: this.keyDecoder
      });
    }
    reinitializeState() {
      this.totalPos = 0;
      this.headByte = HEAD_BYTE_REQUIRED;
      this.stack.reset();
    }
    setBuffer(buffer) {
      const bytes = ensureUint8Array(buffer);
      this.bytes = bytes;
      this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      this.pos = 0;
    }
    appendBuffer(buffer) {
      if (this.headByte === HEAD_BYTE_REQUIRED && !this.hasRemaining(1)) {
        this.setBuffer(buffer);
      } else {
        const remainingData = this.bytes.subarray(this.pos);
        const newData = ensureUint8Array(buffer);
        const newBuffer = new Uint8Array(remainingData.length + newData.length);
        newBuffer.set(remainingData);
        newBuffer.set(newData, remainingData.length);
        this.setBuffer(newBuffer);
      }
    }
    hasRemaining(size) {
      return this.view.byteLength - this.pos >= size;
    }
    createExtraByteError(posToShow) {
      const { view, pos } = this;
      return new RangeError(`Extra ${view.byteLength - pos} of ${view.byteLength} byte(s) found at buffer[${posToShow}]`);
    }
    /**
     * @throws {@link DecodeError}
     * @throws {@link RangeError}
     */
    decode(buffer) {
      if (this.entered) {
        const instance = this.clone();
        return instance.decode(buffer);
      }
      try {
        this.entered = true;
        this.reinitializeState();
        this.setBuffer(buffer);
        const object = this.doDecodeSync();
        if (this.hasRemaining(1)) {
          throw this.createExtraByteError(this.pos);
        }
        return object;
      } finally {
        this.entered = false;
      }
    }
    *decodeMulti(buffer) {
      if (this.entered) {
        const instance = this.clone();
        yield* instance.decodeMulti(buffer);
        return;
      }
      try {
        this.entered = true;
        this.reinitializeState();
        this.setBuffer(buffer);
        while (this.hasRemaining(1)) {
          yield this.doDecodeSync();
        }
      } finally {
        this.entered = false;
      }
    }
    async decodeAsync(stream) {
      if (this.entered) {
        const instance = this.clone();
        return instance.decodeAsync(stream);
      }
      try {
        this.entered = true;
        let decoded = false;
        let object;
        for await (const buffer of stream) {
          if (decoded) {
            this.entered = false;
            throw this.createExtraByteError(this.totalPos);
          }
          this.appendBuffer(buffer);
          try {
            object = this.doDecodeSync();
            decoded = true;
          } catch (e) {
            if (!(e instanceof RangeError)) {
              throw e;
            }
          }
          this.totalPos += this.pos;
        }
        if (decoded) {
          if (this.hasRemaining(1)) {
            throw this.createExtraByteError(this.totalPos);
          }
          return object;
        }
        const { headByte, pos, totalPos } = this;
        throw new RangeError(`Insufficient data in parsing ${prettyByte(headByte)} at ${totalPos} (${pos} in the current buffer)`);
      } finally {
        this.entered = false;
      }
    }
    decodeArrayStream(stream) {
      return this.decodeMultiAsync(stream, true);
    }
    decodeStream(stream) {
      return this.decodeMultiAsync(stream, false);
    }
    async *decodeMultiAsync(stream, isArray) {
      if (this.entered) {
        const instance = this.clone();
        yield* instance.decodeMultiAsync(stream, isArray);
        return;
      }
      try {
        this.entered = true;
        let isArrayHeaderRequired = isArray;
        let arrayItemsLeft = -1;
        for await (const buffer of stream) {
          if (isArray && arrayItemsLeft === 0) {
            throw this.createExtraByteError(this.totalPos);
          }
          this.appendBuffer(buffer);
          if (isArrayHeaderRequired) {
            arrayItemsLeft = this.readArraySize();
            isArrayHeaderRequired = false;
            this.complete();
          }
          try {
            while (true) {
              yield this.doDecodeSync();
              if (--arrayItemsLeft === 0) {
                break;
              }
            }
          } catch (e) {
            if (!(e instanceof RangeError)) {
              throw e;
            }
          }
          this.totalPos += this.pos;
        }
      } finally {
        this.entered = false;
      }
    }
    doDecodeSync() {
      DECODE: while (true) {
        const headByte = this.readHeadByte();
        let object;
        if (headByte >= 224) {
          object = headByte - 256;
        } else if (headByte < 192) {
          if (headByte < 128) {
            object = headByte;
          } else if (headByte < 144) {
            const size = headByte - 128;
            if (size !== 0) {
              this.pushMapState(size);
              this.complete();
              continue DECODE;
            } else {
              object = {};
            }
          } else if (headByte < 160) {
            const size = headByte - 144;
            if (size !== 0) {
              this.pushArrayState(size);
              this.complete();
              continue DECODE;
            } else {
              object = [];
            }
          } else {
            const byteLength = headByte - 160;
            object = this.decodeString(byteLength, 0);
          }
        } else if (headByte === 192) {
          object = null;
        } else if (headByte === 194) {
          object = false;
        } else if (headByte === 195) {
          object = true;
        } else if (headByte === 202) {
          object = this.readF32();
        } else if (headByte === 203) {
          object = this.readF64();
        } else if (headByte === 204) {
          object = this.readU8();
        } else if (headByte === 205) {
          object = this.readU16();
        } else if (headByte === 206) {
          object = this.readU32();
        } else if (headByte === 207) {
          if (this.useBigInt64) {
            object = this.readU64AsBigInt();
          } else {
            object = this.readU64();
          }
        } else if (headByte === 208) {
          object = this.readI8();
        } else if (headByte === 209) {
          object = this.readI16();
        } else if (headByte === 210) {
          object = this.readI32();
        } else if (headByte === 211) {
          if (this.useBigInt64) {
            object = this.readI64AsBigInt();
          } else {
            object = this.readI64();
          }
        } else if (headByte === 217) {
          const byteLength = this.lookU8();
          object = this.decodeString(byteLength, 1);
        } else if (headByte === 218) {
          const byteLength = this.lookU16();
          object = this.decodeString(byteLength, 2);
        } else if (headByte === 219) {
          const byteLength = this.lookU32();
          object = this.decodeString(byteLength, 4);
        } else if (headByte === 220) {
          const size = this.readU16();
          if (size !== 0) {
            this.pushArrayState(size);
            this.complete();
            continue DECODE;
          } else {
            object = [];
          }
        } else if (headByte === 221) {
          const size = this.readU32();
          if (size !== 0) {
            this.pushArrayState(size);
            this.complete();
            continue DECODE;
          } else {
            object = [];
          }
        } else if (headByte === 222) {
          const size = this.readU16();
          if (size !== 0) {
            this.pushMapState(size);
            this.complete();
            continue DECODE;
          } else {
            object = {};
          }
        } else if (headByte === 223) {
          const size = this.readU32();
          if (size !== 0) {
            this.pushMapState(size);
            this.complete();
            continue DECODE;
          } else {
            object = {};
          }
        } else if (headByte === 196) {
          const size = this.lookU8();
          object = this.decodeBinary(size, 1);
        } else if (headByte === 197) {
          const size = this.lookU16();
          object = this.decodeBinary(size, 2);
        } else if (headByte === 198) {
          const size = this.lookU32();
          object = this.decodeBinary(size, 4);
        } else if (headByte === 212) {
          object = this.decodeExtension(1, 0);
        } else if (headByte === 213) {
          object = this.decodeExtension(2, 0);
        } else if (headByte === 214) {
          object = this.decodeExtension(4, 0);
        } else if (headByte === 215) {
          object = this.decodeExtension(8, 0);
        } else if (headByte === 216) {
          object = this.decodeExtension(16, 0);
        } else if (headByte === 199) {
          const size = this.lookU8();
          object = this.decodeExtension(size, 1);
        } else if (headByte === 200) {
          const size = this.lookU16();
          object = this.decodeExtension(size, 2);
        } else if (headByte === 201) {
          const size = this.lookU32();
          object = this.decodeExtension(size, 4);
        } else {
          throw new DecodeError(`Unrecognized type byte: ${prettyByte(headByte)}`);
        }
        this.complete();
        const stack = this.stack;
        while (stack.length > 0) {
          const state = stack.top();
          if (state.type === STATE_ARRAY) {
            state.array[state.position] = object;
            state.position++;
            if (state.position === state.size) {
              object = state.array;
              stack.release(state);
            } else {
              continue DECODE;
            }
          } else if (state.type === STATE_MAP_KEY) {
            if (object === "__proto__") {
              throw new DecodeError("The key __proto__ is not allowed");
            }
            state.key = this.mapKeyConverter(object);
            state.type = STATE_MAP_VALUE;
            continue DECODE;
          } else {
            state.map[state.key] = object;
            state.readCount++;
            if (state.readCount === state.size) {
              object = state.map;
              stack.release(state);
            } else {
              state.key = null;
              state.type = STATE_MAP_KEY;
              continue DECODE;
            }
          }
        }
        return object;
      }
    }
    readHeadByte() {
      if (this.headByte === HEAD_BYTE_REQUIRED) {
        this.headByte = this.readU8();
      }
      return this.headByte;
    }
    complete() {
      this.headByte = HEAD_BYTE_REQUIRED;
    }
    readArraySize() {
      const headByte = this.readHeadByte();
      switch (headByte) {
        case 220:
          return this.readU16();
        case 221:
          return this.readU32();
        default: {
          if (headByte < 160) {
            return headByte - 144;
          } else {
            throw new DecodeError(`Unrecognized array type byte: ${prettyByte(headByte)}`);
          }
        }
      }
    }
    pushMapState(size) {
      if (size > this.maxMapLength) {
        throw new DecodeError(`Max length exceeded: map length (${size}) > maxMapLengthLength (${this.maxMapLength})`);
      }
      this.stack.pushMapState(size);
    }
    pushArrayState(size) {
      if (size > this.maxArrayLength) {
        throw new DecodeError(`Max length exceeded: array length (${size}) > maxArrayLength (${this.maxArrayLength})`);
      }
      this.stack.pushArrayState(size);
    }
    decodeString(byteLength, headerOffset) {
      if (!this.rawStrings || this.stateIsMapKey()) {
        return this.decodeUtf8String(byteLength, headerOffset);
      }
      return this.decodeBinary(byteLength, headerOffset);
    }
    /**
     * @throws {@link RangeError}
     */
    decodeUtf8String(byteLength, headerOffset) {
      if (byteLength > this.maxStrLength) {
        throw new DecodeError(`Max length exceeded: UTF-8 byte length (${byteLength}) > maxStrLength (${this.maxStrLength})`);
      }
      if (this.bytes.byteLength < this.pos + headerOffset + byteLength) {
        throw MORE_DATA;
      }
      const offset = this.pos + headerOffset;
      let object;
      if (this.stateIsMapKey() && this.keyDecoder?.canBeCached(byteLength)) {
        object = this.keyDecoder.decode(this.bytes, offset, byteLength);
      } else {
        object = utf8Decode(this.bytes, offset, byteLength);
      }
      this.pos += headerOffset + byteLength;
      return object;
    }
    stateIsMapKey() {
      if (this.stack.length > 0) {
        const state = this.stack.top();
        return state.type === STATE_MAP_KEY;
      }
      return false;
    }
    /**
     * @throws {@link RangeError}
     */
    decodeBinary(byteLength, headOffset) {
      if (byteLength > this.maxBinLength) {
        throw new DecodeError(`Max length exceeded: bin length (${byteLength}) > maxBinLength (${this.maxBinLength})`);
      }
      if (!this.hasRemaining(byteLength + headOffset)) {
        throw MORE_DATA;
      }
      const offset = this.pos + headOffset;
      const object = this.bytes.subarray(offset, offset + byteLength);
      this.pos += headOffset + byteLength;
      return object;
    }
    decodeExtension(size, headOffset) {
      if (size > this.maxExtLength) {
        throw new DecodeError(`Max length exceeded: ext length (${size}) > maxExtLength (${this.maxExtLength})`);
      }
      const extType = this.view.getInt8(this.pos + headOffset);
      const data = this.decodeBinary(
        size,
        headOffset + 1
        /* extType */
      );
      return this.extensionCodec.decode(data, extType, this.context);
    }
    lookU8() {
      return this.view.getUint8(this.pos);
    }
    lookU16() {
      return this.view.getUint16(this.pos);
    }
    lookU32() {
      return this.view.getUint32(this.pos);
    }
    readU8() {
      const value = this.view.getUint8(this.pos);
      this.pos++;
      return value;
    }
    readI8() {
      const value = this.view.getInt8(this.pos);
      this.pos++;
      return value;
    }
    readU16() {
      const value = this.view.getUint16(this.pos);
      this.pos += 2;
      return value;
    }
    readI16() {
      const value = this.view.getInt16(this.pos);
      this.pos += 2;
      return value;
    }
    readU32() {
      const value = this.view.getUint32(this.pos);
      this.pos += 4;
      return value;
    }
    readI32() {
      const value = this.view.getInt32(this.pos);
      this.pos += 4;
      return value;
    }
    readU64() {
      const value = getUint64(this.view, this.pos);
      this.pos += 8;
      return value;
    }
    readI64() {
      const value = getInt64(this.view, this.pos);
      this.pos += 8;
      return value;
    }
    readU64AsBigInt() {
      const value = this.view.getBigUint64(this.pos);
      this.pos += 8;
      return value;
    }
    readI64AsBigInt() {
      const value = this.view.getBigInt64(this.pos);
      this.pos += 8;
      return value;
    }
    readF32() {
      const value = this.view.getFloat32(this.pos);
      this.pos += 4;
      return value;
    }
    readF64() {
      const value = this.view.getFloat64(this.pos);
      this.pos += 8;
      return value;
    }
  };

  // node_modules/@msgpack/msgpack/dist.esm/decode.mjs
  function decode(buffer, options) {
    const decoder = new Decoder(options);
    return decoder.decode(buffer);
  }

  // src/codec.ts
  var MSGPACK_SUBPROTOCOL = "rtgate.msgpack";
  var utf8 = new TextEncoder();
  var text = new TextDecoder();
  var LITERALS = /* @__PURE__ */ new Set(["ping", "pong"]);
  var Codec = class {
    constructor(encoding = "json") {
      this.encoding = encoding;
    }
    get packed() {
      return this.encoding === "msgpack";
    }
    /** A frame as it goes on the wire. */
    pack(json) {
      if (!this.packed || LITERALS.has(json)) return utf8.encode(json);
      return encode(JSON.parse(json));
    }
    /** A frame from the wire, as JSON text. */
    unpack(bytes) {
      if (!this.packed) return text.decode(bytes);
      if (bytes.length === 4) {
        const t = text.decode(bytes);
        if (LITERALS.has(t)) return t;
      }
      return JSON.stringify(decode(bytes));
    }
  };

  // src/framing.ts
  var encoder = new TextEncoder();
  var utf82 = new TextDecoder();
  function encodeFrame(text2) {
    return encodeFrameBytes(encoder.encode(text2));
  }
  function encodeFrameBytes(body) {
    const frame = new Uint8Array(4 + body.length);
    new DataView(frame.buffer).setUint32(0, body.length);
    frame.set(body, 4);
    return frame;
  }
  var FrameDecoder = class {
    /** `decode` turns a frame's bytes into JSON text (UTF-8 by default). */
    constructor(decode2 = (b) => utf82.decode(b)) {
      this.decode = decode2;
      this.buf = new Uint8Array(0);
    }
    /** Takes a chunk; returns the frames it completed, in order. */
    push(chunk) {
      if (this.buf.length === 0) {
        this.buf = chunk;
      } else {
        const next = new Uint8Array(this.buf.length + chunk.length);
        next.set(this.buf);
        next.set(chunk, this.buf.length);
        this.buf = next;
      }
      const frames = [];
      let at = 0;
      while (this.buf.length - at >= 4) {
        const n = new DataView(this.buf.buffer, this.buf.byteOffset + at).getUint32(0);
        if (this.buf.length - at < 4 + n) break;
        frames.push(this.decode(this.buf.subarray(at + 4, at + 4 + n)));
        at += 4 + n;
      }
      this.buf = at === 0 ? this.buf : this.buf.slice(at);
      return frames;
    }
    /** Bytes of an unfinished frame held. */
    get pending() {
      return this.buf.length;
    }
  };

  // src/links.ts
  var WsLink = class _WsLink {
    constructor(ws, codec = new Codec()) {
      this.ws = ws;
      this.codec = codec;
      this.kind = "websocket";
      this.datagrams = false;
      this.open = true;
    }
    /** Resolves with the link once open, or with a closed link when it never opened. */
    static open(opts, h) {
      return new Promise((resolve) => {
        const u = new URL(opts.url);
        u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
        u.pathname = "/ws";
        if (opts.token) u.searchParams.set("token", opts.token);
        const codec = new Codec(opts.encoding);
        const ws = codec.packed ? new WebSocket(u.toString(), [MSGPACK_SUBPROTOCOL]) : new WebSocket(u.toString());
        ws.binaryType = "arraybuffer";
        const link = new _WsLink(ws, codec);
        h.link = link;
        ws.onopen = () => resolve(link);
        ws.onmessage = (ev) => h.onmessage(typeof ev.data === "string" ? ev.data : codec.unpack(new Uint8Array(ev.data)));
        ws.onclose = (ev) => {
          link.open = false;
          resolve(link);
          h.onclose(ev.code, ev.reason);
        };
        ws.onerror = () => {
        };
      });
    }
    send(text2) {
      if (this.ws.readyState !== WebSocket.OPEN) return;
      if (this.codec.packed && text2 !== "ping") this.ws.send(this.codec.pack(text2));
      else this.ws.send(text2);
    }
    sendVolatile(text2) {
      this.send(text2);
    }
    close(code, reason) {
      this.open = false;
      this.ws.close(code, reason);
    }
  };
  var SAFE_DATAGRAM = 1e3;
  var WtLink = class _WtLink {
    constructor(wt, writer, codec = new Codec()) {
      this.wt = wt;
      this.writer = writer;
      this.codec = codec;
      this.kind = "webtransport";
      this.open = true;
      this.handlers = null;
      let dg = null;
      try {
        dg = wt.datagrams.writable ? wt.datagrams.writable.getWriter() : null;
      } catch {
        dg = null;
      }
      this.dgWriter = dg;
      const reported = wt.datagrams.maxDatagramSize;
      this.dgMax = Math.min(reported || SAFE_DATAGRAM, SAFE_DATAGRAM);
    }
    get datagrams() {
      return this.dgWriter !== null;
    }
    /**
     * Opens a session (trusting the dev certificate's hash when `/cert-hash`
     * says the server runs on one) and its data stream; rejects after `timeoutMs`.
     */
    static async open(opts, timeoutMs, h) {
      const base = new URL(opts.url);
      const info = await (await fetch(new URL("/cert-hash", base))).json();
      const wtOpts = {};
      if (info.dev) {
        const bytes = Uint8Array.from(atob(info.value), (c) => c.charCodeAt(0));
        wtOpts.serverCertificateHashes = [{ algorithm: "sha-256", value: bytes }];
      }
      const u = new URL(opts.wtUrl || info.url);
      if (opts.token) u.searchParams.set("token", opts.token);
      const codec = new Codec(opts.encoding);
      if (codec.packed) u.searchParams.set("encoding", "msgpack");
      const wt = new WebTransport(u.toString(), wtOpts);
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("webtransport timed out")), timeoutMs);
      });
      try {
        await Promise.race([wt.ready, timeout]);
      } catch (e) {
        try {
          wt.close();
        } catch {
        }
        wt.closed.catch(() => {
        });
        throw e;
      } finally {
        clearTimeout(timer);
      }
      const stream = await wt.createBidirectionalStream();
      const link = new _WtLink(wt, stream.writable.getWriter(), codec);
      link.handlers = h;
      h.link = link;
      void link.readFrames(stream.readable.getReader(), h);
      void link.readChannelStreams(h);
      void link.readDatagrams(h);
      wt.closed.then(
        (c) => h.onclose(c.closeCode || 1006, c.reason || ""),
        () => h.onclose(1006, "webtransport closed")
      ).finally(() => {
        link.open = false;
      });
      return link;
    }
    send(text2) {
      this.writer.write(encodeFrameBytes(this.codec.pack(text2))).catch(() => {
      });
    }
    sendVolatile(text2) {
      const body = this.codec.pack(text2);
      const dg = this.dgWriter;
      if (!dg || body.length > this.dgMax) return this.send(text2);
      dg.write(body).catch((e) => {
        if (!this.open) return;
        if (this.dgWriter === dg) {
          this.dgWriter = null;
          this.handlers?.ondatagramsoff?.(`the browser refused a datagram (${String(e)})`);
        }
        this.send(text2);
      });
    }
    async readFrames(reader, h) {
      const frames = new FrameDecoder((b) => this.codec.unpack(b));
      try {
        for (; ; ) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const f of frames.push(value)) h.onmessage(f);
        }
      } catch {
      }
    }
    /** The server sends each channel's messages (inbox, each room) on a stream it opens for it. */
    async readChannelStreams(h) {
      try {
        const streams = this.wt.incomingUnidirectionalStreams.getReader();
        for (; ; ) {
          const { value, done } = await streams.read();
          if (done) break;
          void this.readFrames(value.getReader(), h);
        }
      } catch {
      }
    }
    async readDatagrams(h) {
      try {
        const reader = this.wt.datagrams.readable.getReader();
        for (; ; ) {
          const { value, done } = await reader.read();
          if (done) break;
          h.onmessage(this.codec.unpack(value), true);
        }
      } catch {
      }
    }
    close(code, reason) {
      this.open = false;
      try {
        this.wt.close({ closeCode: code, reason });
      } catch {
      }
    }
  };
  var SseLink = class _SseLink {
    constructor(es, base, codec = new Codec()) {
      this.es = es;
      this.base = base;
      this.codec = codec;
      this.kind = "sse";
      this.datagrams = false;
      this.open = true;
      this.session = "";
      this.token = "";
      this.queue = [];
      this.posting = false;
    }
    /** Resolves with the link once the server named the session, or with a closed link. */
    static open(opts, h) {
      return new Promise((resolve) => {
        const base = new URL(opts.url);
        const u = new URL("/sse", base);
        if (opts.token) u.searchParams.set("token", opts.token);
        const codec = new Codec(opts.encoding);
        if (codec.packed) u.searchParams.set("encoding", "msgpack");
        const es = new EventSource(u.toString(), { withCredentials: true });
        const link = new _SseLink(es, base, codec);
        h.link = link;
        let started = false;
        es.addEventListener("session", (ev) => {
          if (started) {
            link.end();
            h.onclose(1006, "the server lost the session");
            return;
          }
          const s = JSON.parse(ev.data);
          link.session = s.sessionId;
          link.token = s.postToken;
          started = true;
          resolve(link);
        });
        es.onmessage = (ev) => {
          const data = ev.data;
          if (!codec.packed || data === "pong") return h.onmessage(data);
          h.onmessage(codec.unpack(Uint8Array.from(atob(data), (c) => c.charCodeAt(0))));
        };
        es.addEventListener("close", (ev) => {
          let code = 1006;
          let reason = "";
          try {
            ({ code, reason } = JSON.parse(ev.data));
          } catch {
          }
          link.end();
          h.onclose(code, reason);
        });
        es.onerror = () => {
          if (es.readyState === EventSource.CLOSED || !started) {
            link.end();
            resolve(link);
            if (started) h.onclose(1006, "event stream closed");
          }
        };
      });
    }
    end() {
      this.open = false;
      this.es.close();
    }
    send(text2) {
      if (!this.open) return;
      this.queue.push(text2);
      void this.pump();
    }
    sendVolatile(text2) {
      this.send(text2);
    }
    /** One POST at a time, so frames arrive in the order sent. */
    async pump() {
      if (this.posting) return;
      this.posting = true;
      try {
        while (this.queue.length > 0 && this.open) {
          const frames = this.queue.splice(0);
          const json = frames.filter((f) => f !== "ping");
          const bodies = this.codec.packed ? frames.map((f) => f === "ping" ? f : this.codec.pack(f)) : frames.length === json.length ? [`[${json.join(",")}]`] : frames;
          const type = this.codec.packed ? "application/msgpack" : "application/json";
          for (const body of bodies) {
            const r = await fetch(new URL(`/sse/${encodeURIComponent(this.session)}`, this.base), {
              method: "POST",
              headers: { "content-type": type, "x-rtgate-post-token": this.token },
              body,
              credentials: "include"
            });
            if (r.status === 404 || r.status === 403) {
              this.end();
              return;
            }
          }
        }
      } catch {
      } finally {
        this.posting = false;
      }
    }
    close(_code, _reason) {
      this.end();
    }
  };

  // src/memory.ts
  var TransportMemory = class _TransportMemory {
    constructor(storage, now = Date.now) {
      this.storage = storage;
      this.now = now;
    }
    /** The page's localStorage, or none (private mode, workers, Node). */
    static local() {
      let storage = null;
      try {
        storage = globalThis.localStorage ?? null;
      } catch {
        storage = null;
      }
      return new _TransportMemory(storage);
    }
    key(url) {
      return "rtgate.transport:" + new URL(url).origin;
    }
    get(url) {
      try {
        const v = JSON.parse(this.storage?.getItem(this.key(url)) ?? "null");
        const known = v?.kind === "webtransport" || v?.kind === "websocket" || v?.kind === "sse";
        const kind = known ? v.kind : null;
        return kind && typeof v.until === "number" && v.until > this.now() ? kind : null;
      } catch {
        return null;
      }
    }
    set(url, kind, forMs) {
      try {
        this.storage?.setItem(this.key(url), JSON.stringify({ kind, until: this.now() + forMs }));
      } catch {
      }
    }
  };

  // src/outbox.ts
  var Outbox = class {
    constructor(onChange = () => {
    }) {
      this.onChange = onChange;
      this.entries = /* @__PURE__ */ new Map();
    }
    /** Queues a frame; settles with its ack, or rejects after `timeoutMs`. */
    add(frame, timeoutMs) {
      if (this.entries.has(frame.clientMsgId)) {
        return Promise.reject(new RtgateError(400, "clientMsgId already pending", frame.clientMsgId));
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => this.fail(frame.clientMsgId, new RtgateError(408, `no ack within ${timeoutMs} ms`, frame.clientMsgId)),
          timeoutMs
        );
        this.entries.set(frame.clientMsgId, { frame, resolve, reject, timer, writtenOn: -1 });
        this.onChange(this.entries.size);
      });
    }
    /**
     * The frames to write on connection `conn`, oldest first: those never
     * written on it. They count as written once returned.
     */
    due(conn) {
      const out = [];
      for (const e of this.entries.values()) {
        if (e.writtenOn !== conn) {
          e.writtenOn = conn;
          out.push(e.frame);
        }
      }
      return out;
    }
    /** Writes a frame again on the next flush (the server could not store it: 503). */
    retry(id) {
      const e = this.entries.get(id);
      if (e) e.writtenOn = -1;
      return e !== void 0;
    }
    /** The ack arrived. */
    settle(id, ack) {
      const e = this.take(id);
      e?.resolve(ack);
      return e !== void 0;
    }
    /** The server refused it, or its time ran out. */
    fail(id, err) {
      const e = this.take(id);
      e?.reject(err);
      return e !== void 0;
    }
    /** Rejects everything (the client closed, or login was refused for good). */
    failAll(err) {
      for (const id of [...this.entries.keys()]) this.fail(id, err(id));
    }
    has(id) {
      return this.entries.has(id);
    }
    get size() {
      return this.entries.size;
    }
    take(id) {
      const e = this.entries.get(id);
      if (!e) return void 0;
      clearTimeout(e.timer);
      this.entries.delete(id);
      this.onChange(this.entries.size);
      return e;
    }
  };
  function newClientMsgId() {
    const rand = typeof crypto !== "undefined" && "randomUUID" in crypto ? crypto.randomUUID().replace(/-/g, "").slice(0, 16) : Math.random().toString(36).slice(2, 12);
    return `${Date.now().toString(36)}-${rand}`;
  }

  // src/push.ts
  function base64UrlBytes(s) {
    const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - s.length % 4) % 4);
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  }
  function sameKey(a, b) {
    if (!a) return false;
    const x = new Uint8Array(a);
    return x.length === b.length && x.every((v, i) => v === b[i]);
  }
  async function pushRegistration(opts) {
    if (opts.registration) return opts.registration;
    if (typeof navigator === "undefined" || !("serviceWorker" in navigator) || typeof PushManager === "undefined") {
      throw new RtgateError(0, "this browser has no Web Push (service workers and PushManager)");
    }
    await navigator.serviceWorker.register(opts.serviceWorker ?? "/push-sw.js");
    return navigator.serviceWorker.ready;
  }
  async function browserSubscription(base, opts) {
    const res = await fetch(new URL("/push/vapid-public-key", base));
    if (!res.ok) throw new RtgateError(res.status, "the server sends no Web Push");
    const key = base64UrlBytes((await res.text()).trim());
    const reg = await pushRegistration(opts);
    if (typeof Notification !== "undefined" && Notification.permission !== "granted") {
      const answer = await Notification.requestPermission();
      if (answer !== "granted") throw new RtgateError(403, `notifications are ${answer}`);
    }
    let sub = await reg.pushManager.getSubscription();
    if (sub && !sameKey(sub.options.applicationServerKey, key)) {
      await sub.unsubscribe();
      sub = null;
    }
    const timeoutMs = opts.timeoutMs ?? 1e4;
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${timeoutMs} ms`)),
        timeoutMs
      );
    });
    try {
      sub ??= await Promise.race([
        reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }),
        late
      ]);
    } catch (e) {
      throw new RtgateError(503, `the browser's push service did not subscribe: ${e.message}`);
    } finally {
      clearTimeout(timer);
    }
    return sub.toJSON();
  }

  // src/positions.ts
  var MAX_SAVED_ROOMS = 1e3;
  var MAX_ID = 256;
  var isSeq = (v) => Number.isSafeInteger(v) && v >= 0;
  var isId = (v) => typeof v === "string" && v.length > 0 && v.length <= MAX_ID;
  function sanitize(v) {
    if (typeof v !== "object" || v === null) return null;
    const o = v;
    const user = isId(o.user) ? o.user : null;
    if (user === null) return null;
    const inbox = isSeq(o.inbox) ? o.inbox : null;
    const joined = Array.isArray(o.joined) ? o.joined.filter(isId).slice(0, MAX_SAVED_ROOMS) : [];
    const rooms = {};
    if (typeof o.rooms === "object" && o.rooms !== null && !Array.isArray(o.rooms)) {
      for (const [r, seq] of Object.entries(o.rooms).slice(0, MAX_SAVED_ROOMS)) {
        if (isId(r) && isSeq(seq)) rooms[r] = seq;
      }
    }
    return { user, inbox, rooms, joined: [...new Set(joined)] };
  }
  var MemoryStore = class {
    constructor() {
      this.map = /* @__PURE__ */ new Map();
    }
    async load(key) {
      const p = this.map.get(key);
      return p ? structuredClone(p) : null;
    }
    async save(key, p) {
      this.map.set(key, structuredClone(p));
    }
  };
  var IndexedDbStore = class {
    constructor(dbName = "rtgate") {
      this.dbName = dbName;
      this.db = null;
    }
    static available() {
      try {
        return typeof indexedDB !== "undefined" && indexedDB !== null;
      } catch {
        return false;
      }
    }
    open() {
      this.db ??= new Promise((resolve, reject) => {
        const req = indexedDB.open(this.dbName, 1);
        req.onupgradeneeded = () => req.result.createObjectStore("positions");
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      return this.db;
    }
    async run(mode, op) {
      const db = await this.open();
      return new Promise((resolve, reject) => {
        const tx = db.transaction("positions", mode);
        const req = op(tx.objectStore("positions"));
        tx.oncomplete = () => resolve(req.result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    }
    async load(key) {
      return await this.run("readonly", (s) => s.get(key)) ?? null;
    }
    async save(key, p) {
      await this.run("readwrite", (s) => s.put(p, key));
    }
  };
  var PositionTracker = class {
    constructor(rooms = []) {
      this.user = null;
      this.inbox = null;
      this.rooms = /* @__PURE__ */ new Map();
      this.joined = /* @__PURE__ */ new Set();
      for (const r of rooms) this.joined.add(r);
    }
    /** Takes saved positions (those of a page before a reload); the rooms asked for now stay. */
    restore(saved) {
      const p = sanitize(saved);
      if (p === null) return;
      this.user = p.user;
      this.inbox = p.inbox;
      for (const r of p.joined) this.joined.add(r);
      for (const [r, seq] of Object.entries(p.rooms)) if (this.joined.has(r)) this.rooms.set(r, seq);
    }
    /** A delivered message moves its channel's position; true when one moved. */
    observe(m) {
      if (m.seq === void 0) return false;
      if (m.receivedUserId !== void 0) {
        if (this.inbox !== null && m.seq <= this.inbox) return false;
        this.inbox = m.seq;
        return true;
      }
      if (m.roomId !== void 0 && this.joined.has(m.roomId)) {
        const at = this.rooms.get(m.roomId);
        if (at !== void 0 && m.seq <= at) return false;
        this.rooms.set(m.roomId, m.seq);
        return true;
      }
      return false;
    }
    /** The position of the channel `m` belongs to, if known (its last seq). */
    positionOf(m) {
      if (m.receivedUserId !== void 0) return this.inbox ?? void 0;
      if (m.roomId !== void 0 && this.joined.has(m.roomId)) return this.rooms.get(m.roomId);
      return void 0;
    }
    /** A login reply: the inbox position when none is known yet. */
    loggedIn(user, inboxSeq) {
      if (this.user !== null && this.user !== user) {
        this.inbox = null;
        this.rooms.clear();
      }
      this.user = user;
      if (this.inbox === null) this.inbox = inboxSeq;
    }
    /** A join answer: the room's position when none is known yet. */
    joinedRoom(room, seq) {
      this.joined.add(room);
      if (!this.rooms.has(room) && seq !== void 0) this.rooms.set(room, seq);
    }
    leftRoom(room) {
      this.joined.delete(room);
      this.rooms.delete(room);
    }
    /** The login's `since`, once there is something to resume from. */
    since() {
      if (this.inbox === null && this.rooms.size === 0) return void 0;
      const since = { rooms: Object.fromEntries(this.rooms) };
      if (this.inbox !== null) since.inbox = this.inbox;
      return since;
    }
    snapshot() {
      return { user: this.user, inbox: this.inbox, rooms: Object.fromEntries(this.rooms), joined: [...this.joined] };
    }
  };

  // src/receipts.ts
  var MAX_RECEIPT_IDS = 100;
  var DeliveredReceipts = class {
    constructor(send, delayMs = 300) {
      this.send = send;
      this.delayMs = delayMs;
      this.ids = [];
    }
    /** A direct message reached us. */
    add(msgId) {
      this.ids.push(msgId);
      if (this.ids.length >= MAX_RECEIPT_IDS) return this.flush();
      if (this.timer === void 0) this.timer = setTimeout(() => this.flush(), this.delayMs);
    }
    /** Sends what is gathered now. */
    flush() {
      clearTimeout(this.timer);
      this.timer = void 0;
      for (const frame of receiptFrames("delivered", this.ids.splice(0))) this.send(frame);
    }
    stop() {
      clearTimeout(this.timer);
      this.timer = void 0;
    }
  };
  function receiptFrames(kind, ids) {
    const frames = [];
    for (let i = 0; i < ids.length; i += MAX_RECEIPT_IDS) {
      frames.push({ msgType: 12, kind, msgIds: ids.slice(i, i + MAX_RECEIPT_IDS) });
    }
    return frames;
  }

  // src/client.ts
  var RtgateClient = class {
    constructor(opts = {}) {
      this.state = "idle";
      this.transport = null;
      /** The WebTransport draft of the current session (null on WebSocket). */
      this.wtDraft = null;
      /** The current connection; null between connections. */
      this.link = null;
      this.events = new Emitter();
      /** The user whose saved positions were loaded, once known. */
      this.loadedFor = null;
      /** A token fetched to learn the user, for the next connection to use. */
      this.tokenFetched = false;
      this.filter = new DeliveryFilter();
      this.memory = TransportMemory.local();
      this.waiters = [];
      /** Calls made while disconnected, run after the next login. */
      this.afterLogin = [];
      this.firstLogin = null;
      this.loaded = null;
      this.closedByUser = false;
      /** Counts logins: the outbox writes each frame once per connection. */
      this.conn = 0;
      this.heartbeatSec = 25;
      this.lastInbound = 0;
      this.lastErrorCode = null;
      this.refreshing = false;
      this.authFailures = 0;
      this.onPageHide = () => void this.savePositions();
      /** Room read positions waiting to be sent, per room. */
      this.roomReads = /* @__PURE__ */ new Map();
      /** Delivered receipts on their way, a moment's worth per frame. */
      this.delivered = new DeliveredReceipts((f) => this.sendNow(f));
      /** Datagram copies ahead of their channel, held until it catches up. */
      this.early = new EarlyCopies((m) => this.positions.positionOf(m));
      const origin = typeof location !== "undefined" ? location.origin : "http://127.0.0.1";
      this.opts = {
        url: origin,
        transport: "auto",
        wtTimeoutMs: 3e3,
        wtGraceMs: 250,
        wtMemoryMs: 6e5,
        sendTimeoutMs: 3e4,
        requestTimeoutMs: 1e4,
        ...opts
      };
      this.outbox = new Outbox((pending) => this.events.emit("outbox", { pending }));
      this.positions = new PositionTracker(this.opts.rooms ?? []);
      this.backoff = new Backoff(opts.backoffMs ?? 500, opts.maxBackoffMs ?? 15e3);
      this.resendBackoff = new Backoff(opts.backoffMs ?? 500, opts.maxBackoffMs ?? 15e3);
      const persist = opts.persist ?? true;
      this.store = typeof persist === "object" ? persist : persist && IndexedDbStore.available() ? new IndexedDbStore() : new MemoryStore();
      this.storePrefix = `${new URL(this.opts.url).origin}|`;
    }
    /** Rooms joined at every login. */
    get rooms() {
      return this.positions.joined;
    }
    /** Adds a listener (typed by event name). */
    on(event, fn) {
      this.events.on(event, fn);
      return this;
    }
    off(event, fn) {
      this.events.off(event, fn);
      return this;
    }
    /** Sends waiting for their ack (queued while disconnected, or written and not yet acked). */
    get pendingSends() {
      return this.outbox.size;
    }
    /** Connects and logs in; resolves with the first login reply. Reconnects on its own afterwards. */
    async connect() {
      this.closedByUser = false;
      await this.loadPositions();
      return new Promise((resolve, reject) => {
        this.firstLogin = { resolve, reject };
        void this.open();
      });
    }
    /**
     * Closes for good: no reconnect, every pending send and request rejected
     * (code 410), timers stopped, positions saved.
     */
    async close() {
      this.closedByUser = true;
      this.stopTimers();
      if (typeof removeEventListener !== "undefined") removeEventListener("pagehide", this.onPageHide);
      this.outbox.failAll((id) => new RtgateError(410, "client closed", id));
      this.rejectWaiters(410, "client closed");
      this.afterLogin = [];
      this.link?.close(1e3, "bye");
      this.link = null;
      this.setState("closed");
      await this.savePositions();
    }
    /** Sends a business message; resolves with its ack once stored (after a reconnect if need be). */
    send(msg) {
      const frame = { msgType: 3, ...msg };
      if (frame.volatile) {
        if (this.connected) this.link.sendVolatile(JSON.stringify(frame));
        return Promise.resolve(null);
      }
      const out = { ...frame, clientMsgId: frame.clientMsgId || newClientMsgId() };
      const acked = this.outbox.add(out, this.opts.sendTimeoutMs);
      this.flush();
      return acked;
    }
    sendToUser(userId, body, extra = {}) {
      return this.send({ receivedUserId: userId, msgBody: body, ...extra });
    }
    sendToRoom(roomId, body, extra = {}) {
      return this.send({ roomId, msgBody: body, ...extra });
    }
    /**
     * A volatile "latest value wins" update (typing, cursor, location):
     * receivers drop one older than the newest they have for this sender,
     * destination and `key`.
     */
    sendLatest(dest, key, body) {
      return this.send({ ...dest, msgBody: body, volatile: true, latest: key });
    }
    async join(roomId) {
      const frame = { msgType: 5, roomId };
      if (this.opts.presenceEvents) frame.presenceEvents = true;
      const r = await this.request(frame);
      this.positions.joinedRoom(r.roomId, r.seq);
      this.scheduleSave();
      return r;
    }
    async leave(roomId) {
      this.positions.leftRoom(String(roomId));
      this.scheduleSave();
      return this.request({ msgType: 6, roomId });
    }
    history(roomId, since = 0, limit = 50) {
      return this.request({ msgType: 7, roomId, since, limit });
    }
    presence(roomId) {
      return this.request({ msgType: 8, roomId });
    }
    // --- chat: receipts, read state, amendments, typing -------------------
    /** "I have read these direct messages" (their senders get a receipt). */
    markRead(msgIds) {
      for (const f of receiptFrames("read", msgIds)) this.sendNow(f);
    }
    /**
     * "I have read this room up to `seq`" (its members are told). Sent at
     * most twice a second per room, the furthest position: a busy room read
     * message by message costs the server one receipt per half second.
     */
    markRoomRead(roomId, seq) {
      const room = String(roomId);
      this.roomReads.set(room, Math.max(seq, this.roomReads.get(room) ?? 0));
      if (this.roomReadTimer !== void 0) return;
      this.roomReadTimer = setTimeout(() => {
        this.roomReadTimer = void 0;
        for (const [r, s] of this.roomReads) this.sendNow({ msgType: 12, kind: "read", roomId: r, seq: s });
        this.roomReads.clear();
      }, 500);
    }
    /** "These direct messages reached me" (done by itself unless `autoDelivered: false`). */
    markDelivered(msgIds) {
      for (const f of receiptFrames("delivered", msgIds)) this.sendNow(f);
    }
    /** Unread counts of the inbox and every room joined or read. */
    async unread() {
      const r = await this.request({ msgType: 13 });
      return r.unread;
    }
    /** Members' read positions in a room (paged by `after`), and our unread count there. */
    readState(roomId, opts = {}) {
      return this.request({ msgType: 13, roomId, ...opts });
    }
    /** Replaces the body of one of our messages; resolves with the amendment's ack. */
    edit(msgId, body) {
      return this.sendStored({ msgType: 14, msgId, op: "edit", msgBody: body });
    }
    /** Deletes one of our messages (its body leaves the server's store). */
    delete(msgId) {
      return this.sendStored({ msgType: 14, msgId, op: "delete" });
    }
    /** Adds (or with `on = false` takes back) a reaction. */
    react(msgId, reaction, on = true) {
      return this.sendStored({ msgType: 14, msgId, op: on ? "react" : "unreact", reaction });
    }
    /** Tells a room or a user that we are typing (volatile; the server passes one a second). */
    typing(dest, typing = true) {
      if (this.connected) this.link.sendVolatile(JSON.stringify({ msgType: 15, ...dest, typing }));
    }
    /**
     * Push while the page is closed: asks the user's permission, subscribes
     * the browser with the server's VAPID key and registers the subscription
     * (msgType 16). The server then pushes when a direct message reaches no
     * session of ours; `/push-sw.js` (or the app's own worker) shows it.
     */
    async enablePush(opts = {}) {
      const sub = await browserSubscription(this.opts.url, opts);
      await this.request({ msgType: 16, push: sub });
      return sub;
    }
    /** Stops push to this browser: unregistered at the server, then unsubscribed. */
    async disablePush(opts = {}) {
      const reg = opts.registration ?? (typeof navigator !== "undefined" && "serviceWorker" in navigator ? await navigator.serviceWorker.getRegistration() : void 0);
      if (!reg) return;
      const sub = await reg.pushManager.getSubscription();
      if (!sub) return;
      await this.request({ msgType: 16, push: { endpoint: sub.endpoint }, remove: true });
      await sub.unsubscribe();
    }
    /**
     * Registers a native app's device token (APNs or FCM, from a shell such
     * as Capacitor or React Native), or removes it.
     */
    async registerDevice(device, remove = false) {
      await this.request({ msgType: 16, ...device, ...remove ? { remove: true } : {} });
    }
    /** A frame through the outbox: acked like a message, resent after a reconnect. */
    sendStored(frame) {
      const out = { ...frame, clientMsgId: newClientMsgId() };
      const acked = this.outbox.add(out, this.opts.sendTimeoutMs);
      this.flush();
      return acked;
    }
    /** A frame now, or after the next login. */
    sendNow(frame) {
      const write = () => this.link.send(JSON.stringify(frame));
      if (this.connected) write();
      else if (!this.closedByUser) this.afterLogin.push(write);
    }
    /** Delivers a message to the page unless it is a duplicate or a stale
     * "latest" update; a datagram copy ahead of its channel waits. */
    onMessage(m, datagram = false) {
      const deliver = (x) => this.deliver(x);
      if (datagram && m.seq !== void 0) {
        if (m.msgId && this.early.has(m.msgId)) return;
        if (this.early.hold({ ...m, via: "datagram" }, deliver)) return;
        m.via = "datagram";
      } else if (m.msgId && this.early.has(m.msgId)) {
        this.deliver(this.early.take(m.msgId));
        this.early.release(deliver);
        return;
      } else if (this.transport === "webtransport" && m.seq !== void 0) {
        m.via = "stream";
      }
      this.deliver(m);
      if (this.early.size > 0) this.early.release(deliver);
    }
    deliver(m) {
      const verdict = this.filter.check(m);
      if (verdict === "duplicate") return;
      if (verdict === "stale") return this.events.emit("stale", m);
      const notice = m.volatile === true;
      if (!notice && this.positions.observe(m)) {
        if (m.receivedUserId !== void 0) this.scheduleCursor();
        this.scheduleSave();
      }
      switch (m.msgType) {
        case 12:
          return this.events.emit("receipt", m);
        case 14:
          return this.events.emit("amended", m);
        case 15:
          return this.events.emit("typing", m);
      }
      const me = this.positions.user;
      if (this.opts.autoDelivered !== false && m.seq !== void 0 && m.msgId && m.receivedUserId !== void 0 && String(m.receivedUserId) === me && String(m.sendUserId) !== me) {
        this.delivered.add(m.msgId);
      }
      this.events.emit("message", m);
    }
    // --- connection -------------------------------------------------------
    get connected() {
      return this.state === "connected" && this.link !== null && this.link.open;
    }
    setState(state, detail) {
      this.state = state;
      const link = this.link;
      this.events.emit("state", {
        state,
        detail,
        transport: this.transport,
        wtDraft: this.wtDraft,
        datagrams: link ? link.datagrams : false
      });
    }
    /** The user a login will be, when it is known before the server says
     * (`userId`, or the token's subject); not with cookies alone. */
    expectedUser() {
      return this.opts.userId ?? tokenSubject(this.opts.token);
    }
    /** Loads the positions saved for `user` (once per user), so that the
     * login resumes with them. Another user's positions are never loaded:
     * on a shared browser they would skip this user's messages. */
    async loadPositionsOf(user) {
      if (this.loadedFor === user) return null;
      this.loadedFor = user;
      try {
        const saved = sanitize(await this.store.load(this.storePrefix + user));
        if (saved && saved.user === user) {
          this.positions.restore(saved);
          return saved;
        }
      } catch (e) {
        this.events.emit("error", { msgType: 9, code: 0, reason: `positions not loaded: ${e}` });
      }
      return null;
    }
    loadPositions() {
      this.loaded ??= (async () => {
        if (typeof addEventListener !== "undefined") addEventListener("pagehide", this.onPageHide);
        if (this.opts.userId === void 0 && this.opts.getToken && this.opts.token === void 0) {
          await this.freshToken();
          this.tokenFetched = true;
        }
        const user = this.expectedUser();
        if (user !== void 0) await this.loadPositionsOf(user);
      })();
      return this.loaded;
    }
    /** After a login whose user was not known before it (cookies): that
     * user's saved positions are loaded now, and what its joined rooms got
     * since is fetched with history, as a `since` would have replayed it. */
    async catchUp(user) {
      const inbox = this.positions.inbox;
      const saved = await this.loadPositionsOf(user);
      if (!saved) return;
      if (inbox !== null && (this.positions.inbox === null || this.positions.inbox < inbox)) {
        this.positions.inbox = inbox;
      }
      for (const [room, from] of Object.entries(saved.rooms)) {
        if (!this.positions.joined.has(room)) continue;
        let since = from;
        for (let page = 0; page < 100; page++) {
          let h;
          try {
            h = await this.history(room, since, 100);
          } catch {
            break;
          }
          for (const m of h.messages ?? []) this.onMessage(m);
          const last = h.messages?.[h.messages.length - 1]?.seq;
          if (last === void 0 || (h.messages?.length ?? 0) < 100) break;
          since = last;
        }
      }
    }
    async freshToken() {
      if (!this.opts.getToken) return;
      try {
        this.opts.token = await this.opts.getToken();
      } catch (e) {
        this.events.emit("error", { msgType: 9, code: 0, reason: `getToken: ${e}` });
      }
    }
    /** Answers the server's "credentials expire soon" with new ones (msgType 10). */
    async refresh() {
      if (this.refreshing || !this.opts.getToken || !this.link?.open) return;
      this.refreshing = true;
      await this.freshToken();
      if (this.link?.open) this.link.send(JSON.stringify({ msgType: 10, token: this.opts.token }));
    }
    async open() {
      this.reconnectTimer = void 0;
      if (this.closedByUser) return;
      this.setState("connecting");
      if (this.tokenFetched) this.tokenFetched = false;
      else await this.freshToken();
      const link = await this.openLink();
      if (!link || !link.open || this.closedByUser) return;
      this.link = link;
      this.lastErrorCode = null;
      this.transport = link.kind;
      this.lastInbound = Date.now();
      this.setState("logging-in");
      const login = { msgType: 2, rooms: [...this.positions.joined] };
      if (this.opts.userId !== void 0) login.sendUserId = this.opts.userId;
      if (this.opts.token) login.token = this.opts.token;
      if (this.opts.presenceEvents) login.presenceEvents = true;
      if (link.kind === "webtransport" && (this.opts.redundancy ?? "auto") !== "off") {
        login.redundancy = this.opts.redundancy ?? "auto";
      }
      const since = this.positions.since();
      if (since) login.since = since;
      link.send(JSON.stringify(login));
    }
    /**
     * "auto" races WebTransport against WebSocket: WebTransport wins if it is
     * ready first, or within `wtGraceMs` of the WebSocket; otherwise the
     * WebSocket is used at once and the WebTransport attempt dropped. The
     * winner is remembered for this origin (`wtMemoryMs`), so a returning user
     * on a network that blocks UDP goes straight to WebSocket.
     */
    async openLink() {
      const o = this.opts;
      const mode = o.transport;
      if (mode === "sse") return this.choose(await this.openSse());
      const canWt = mode !== "websocket" && typeof WebTransport !== "undefined";
      if (!canWt) return this.choose(await this.openWs() ?? await this.fallBack(mode));
      if (mode === "webtransport") {
        try {
          return this.choose(await WtLink.open(o, o.wtTimeoutMs, this.handlers()));
        } catch (e) {
          this.events.emit("fallback", errorText(e));
          this.onClose(0, errorText(e));
          return null;
        }
      }
      const memory = this.memory.get(o.url);
      if (memory === "sse") {
        this.events.emit("fallback", "only the HTTP fallback worked here recently");
        return this.choose(await this.openSse());
      }
      if (memory === "websocket") {
        this.events.emit("fallback", "it failed here recently");
        return this.choose(await this.openWs() ?? await this.fallBack(mode));
      }
      const wtP = WtLink.open(o, o.wtTimeoutMs, this.handlers()).then(
        (link) => {
          this.memory.set(o.url, "webtransport", o.wtMemoryMs);
          return link;
        },
        (e) => {
          this.memory.set(o.url, "websocket", o.wtMemoryMs);
          this.events.emit("fallback", errorText(e));
          return null;
        }
      );
      const wsP = this.openWs();
      const grace = memory === "webtransport" ? 4 * o.wtGraceMs : o.wtGraceMs;
      const wt = await Promise.race([
        wtP,
        wsP.then((ws2) => ws2 ? new Promise((r) => setTimeout(() => r(void 0), grace)) : wtP)
      ]);
      if (wt) {
        void wsP.then((ws2) => ws2?.close(1e3, "webtransport preferred"));
        return this.choose(wt);
      }
      void wtP.then((late) => late?.close(1e3, "websocket chosen"));
      const ws = await wsP ?? await this.fallBack(mode);
      if (!ws) {
        this.onClose(1006, "no transport connected");
        return null;
      }
      return this.choose(ws);
    }
    /** Neither WebTransport nor WebSocket: Server-Sent Events and POSTs, remembered. */
    async fallBack(mode) {
      if (mode === "websocket" || typeof EventSource === "undefined") return null;
      const link = await this.openSse();
      if (link) {
        this.events.emit("fallback", "no WebSocket either: using the HTTP fallback");
        this.memory.set(this.opts.url, "sse", this.opts.wtMemoryMs);
      }
      return link;
    }
    async openSse() {
      const link = await SseLink.open(this.opts, this.handlers());
      return link.open ? link : null;
    }
    async openWs() {
      const link = await WsLink.open(this.opts, this.handlers());
      return link.open ? link : null;
    }
    /** Handlers for one link: its frames and close reach the client only while it is the chosen link. */
    handlers() {
      const h = {
        link: null,
        onmessage: (text2, datagram) => {
          if (this.link === h.link) this.onFrame(text2, datagram === true);
        },
        onclose: (code, reason) => {
          if (this.link === h.link) this.onClose(code, reason);
        },
        ondatagramsoff: (reason) => {
          if (this.link === h.link && this.state === "connected") this.setState("connected", reason);
        }
      };
      return h;
    }
    choose(link) {
      if (!link) {
        this.onClose(1006, "no transport connected");
        return null;
      }
      if (this.closedByUser) {
        link.close(1e3, "bye");
        return null;
      }
      this.link = link;
      return link;
    }
    onClose(code, reason) {
      clearInterval(this.hbTimer);
      this.rejectWaiters(code, `connection closed (${code})`);
      if (this.closedByUser) return;
      if (code === 4401 && this.opts.getToken && this.authFailures < 2) {
        this.authFailures += 1;
        this.setState("reconnecting", "credentials expired; fetching a fresh token");
        this.reconnectTimer = setTimeout(() => void this.open(), 100 + Math.random() * 400);
        return;
      }
      const refused = code === 4401 || code === 4403 ? `${code} ${reason}` : this.state === "logging-in" && (this.lastErrorCode === 401 || this.lastErrorCode === 403) ? `${this.lastErrorCode}` : null;
      if (refused !== null) {
        this.setState("refused", refused);
        const err = new RtgateError(code || this.lastErrorCode || 0, `login refused: ${refused}`);
        this.outbox.failAll((id) => new RtgateError(err.code, err.message, id));
        this.firstLogin?.reject(err);
        this.firstLogin = null;
        return;
      }
      const delay = this.backoff.next();
      this.setState("reconnecting", `closed ${code}${reason ? " " + reason : ""}; retry in ${delay} ms`);
      this.reconnectTimer = setTimeout(() => void this.open(), delay);
    }
    onFrame(data, datagram = false) {
      this.lastInbound = Date.now();
      if (data === "pong") return;
      let m;
      try {
        m = JSON.parse(data);
      } catch {
        return;
      }
      switch (m.msgType) {
        case 1:
          return;
        case 2:
          return this.onLogin(m);
        case 4:
          this.resendBackoff.reset();
          this.outbox.settle(m.clientMsgId, m);
          return;
        case 9:
          return this.onError(m);
        case 10:
          if (this.refreshing) {
            this.refreshing = false;
            return this.events.emit("refreshed", m);
          }
          this.events.emit("expiring", m);
          void this.refresh();
          return;
        case 11:
          return this.events.emit("presence", m);
        case 5:
        case 6:
        case 7:
        case 8:
        case 13:
        case 16:
          if (m.msgType === 6 && this.waiterFor(m) < 0) {
            this.positions.leftRoom(m.roomId);
            this.scheduleSave();
            return this.events.emit("left", m);
          }
          if (m.msgType === 5 && this.waiterFor(m) < 0) {
            this.positions.joinedRoom(m.roomId, m.seq);
            this.scheduleSave();
          }
          return this.wake(m.msgType, m);
        default:
          return this.onMessage(m, datagram);
      }
    }
    onLogin(m) {
      this.backoff.reset();
      this.authFailures = 0;
      this.refreshing = false;
      this.conn += 1;
      const unknownBefore = this.loadedFor !== m.sendUserId;
      this.positions.loggedIn(m.sendUserId, m.inboxSeq);
      if (unknownBefore) void this.catchUp(m.sendUserId);
      this.scheduleSave();
      this.heartbeatSec = m.heartbeatSec || 25;
      clearInterval(this.hbTimer);
      this.hbTimer = setInterval(() => this.heartbeat(), this.heartbeatSec * 1e3);
      this.wtDraft = m.wtDraft ?? null;
      const link = this.link;
      const viaStream = link && link.kind === "webtransport" && !link.datagrams ? "; no datagrams here: volatile messages travel on the stream" : "";
      this.setState("connected", `${m.sendUserId} on ${m.nodeId}${viaStream}`);
      this.events.emit("login", m);
      this.firstLogin?.resolve(m);
      this.firstLogin = null;
      const deferred = this.afterLogin;
      this.afterLogin = [];
      for (const run of deferred) run();
      this.flush();
    }
    onError(m) {
      this.lastErrorCode = m.code;
      if (m.clientMsgId && this.outbox.has(m.clientMsgId)) {
        if (m.code === 503 && this.outbox.retry(m.clientMsgId)) {
          if (this.retryTimer === void 0) {
            this.retryTimer = setTimeout(() => {
              this.retryTimer = void 0;
              this.flush();
            }, this.resendBackoff.next());
          }
          return;
        }
        this.outbox.fail(m.clientMsgId, new RtgateError(m.code, m.reason, m.clientMsgId));
        return;
      }
      this.events.emit("error", m);
      this.wake(9, m);
    }
    /** Writes what the outbox has not yet written on this connection. */
    flush() {
      if (!this.connected) return;
      for (const frame of this.outbox.due(this.conn)) this.link.send(JSON.stringify(frame));
    }
    /** Tells the server, at most once a second, how far we hold our inbox. */
    scheduleCursor() {
      if (this.cursorTimer) return;
      this.cursorTimer = setTimeout(() => {
        this.cursorTimer = void 0;
        if (this.connected && this.positions.inbox !== null) {
          this.link.send(JSON.stringify({ msgType: 4, seq: this.positions.inbox }));
        }
      }, 1e3);
    }
    scheduleSave() {
      if (this.saveTimer) return;
      this.saveTimer = setTimeout(() => void this.savePositions(), 200);
    }
    async savePositions() {
      clearTimeout(this.saveTimer);
      this.saveTimer = void 0;
      try {
        const user = this.positions.user;
        if (user !== null) await this.store.save(this.storePrefix + user, this.positions.snapshot());
      } catch (e) {
        this.events.emit("error", { msgType: 9, code: 0, reason: `positions not saved: ${e}` });
      }
    }
    heartbeat() {
      if (!this.link?.open) return;
      if (Date.now() - this.lastInbound > 3 * this.heartbeatSec * 1e3) {
        this.link.close(4408, "heartbeat timeout");
        return;
      }
      this.link.send(JSON.stringify({ msgType: 1 }));
    }
    /**
     * A request answered by a reply of the same msgType and room (or an
     * error); waits for a login when offline.
     */
    request(frame) {
      return new Promise((resolve, reject) => {
        const timeoutMs = this.opts.requestTimeoutMs;
        const w = {
          msgType: frame.msgType,
          roomId: roomKey(frame.roomId),
          resolve,
          reject,
          timer: setTimeout(() => {
            this.waiters = this.waiters.filter((x) => x !== w);
            this.afterLogin = this.afterLogin.filter((x) => x !== write);
            reject(new RtgateError(408, `no answer within ${timeoutMs} ms`));
          }, timeoutMs)
        };
        const write = () => {
          this.waiters.push(w);
          this.link.send(JSON.stringify(frame));
        };
        if (this.closedByUser) {
          clearTimeout(w.timer);
          reject(new RtgateError(410, "client closed"));
        } else if (this.connected) write();
        else this.afterLogin.push(write);
      });
    }
    /**
     * The waiter a reply answers: the oldest request of its msgType for its
     * room (the server answers a session's requests in order). An error names
     * no request, so it goes to the oldest of any kind.
     */
    waiterFor(m) {
      if (m.msgType === 9) return this.waiters.length > 0 ? 0 : -1;
      const room = roomKey(m.roomId);
      return this.waiters.findIndex((w) => w.msgType === m.msgType && w.roomId === room);
    }
    wake(msgType, m) {
      const i = this.waiterFor(m);
      if (i < 0) return;
      const [w] = this.waiters.splice(i, 1);
      clearTimeout(w.timer);
      if (msgType === 9 && w.msgType !== 9) w.reject(new RtgateError(m.code, m.reason));
      else w.resolve(m);
    }
    rejectWaiters(code, reason) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) {
        clearTimeout(w.timer);
        w.reject(new RtgateError(code, reason));
      }
    }
    stopTimers() {
      this.delivered.flush();
      clearTimeout(this.roomReadTimer);
      this.roomReadTimer = void 0;
      for (const [r, s] of this.roomReads) this.sendNow({ msgType: 12, kind: "read", roomId: r, seq: s });
      this.roomReads.clear();
      clearInterval(this.hbTimer);
      for (const t of [this.cursorTimer, this.reconnectTimer, this.retryTimer]) clearTimeout(t);
      this.cursorTimer = this.reconnectTimer = this.retryTimer = void 0;
    }
  };
  function errorText(e) {
    return String(e?.message ?? e);
  }
  function tokenSubject(token) {
    if (!token) return void 0;
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const sub = JSON.parse(atob(part)).sub;
      return sub === void 0 ? void 0 : String(sub);
    } catch {
      return void 0;
    }
  }
  function roomKey(roomId) {
    return roomId === void 0 || roomId === null ? "" : String(roomId);
  }

  // src/global.ts
  Object.assign(globalThis, { Rtgate: index_exports, RtgateClient });
})();
