// WebSocket frames (RFC 6455, 5.2) as the gateway sees them while it passes bytes through: it reads each frame's head
// (2 to 14 bytes) and skips its payload, never unmasking or copying it. That is enough to know a message's size
// before its bytes are sent on (maxMessageBytes) and where one frame ends and the next begins, the only places a close
// frame of the gateway's own may be put (shutdown, idle timeout). With permessage-deflate the sizes are the compressed
// ones, as they cross the wire.
//
// Cost: the head of each frame is read byte by byte; a chunk holding part of a large payload is skipped in one step.

import { randomBytes } from 'node:crypto';

export type FrameProblem = { code: 1002 | 1009; reason: string };

/** Reads the frame heads of one direction of a WebSocket connection. */
export class FrameScanner {
  /** Payload bytes of the current frame still to come; 0 at a frame boundary once the head is read. */
  private payloadLeft = 0;
  /** Bytes of the current frame's head read so far, and how many it has (2 until the second byte says). */
  private head = new Uint8Array(14);
  private headRead = 0;
  private headSize = 2;
  /** Size of the message being received (its frames so far). */
  private messageBytes = 0;

  constructor(
    private readonly maxMessageBytes: number,
    /** Frames from a client must be masked, those from a server must not (RFC 6455, 5.1). */
    private readonly masked: boolean,
  ) {}

  /** True between frames: a frame of the gateway's own may be sent here. */
  get atBoundary(): boolean {
    return this.payloadLeft === 0 && this.headRead === 0;
  }

  /**
   * Reads `chunk`. Returns a problem (the connection must be closed with its code), or the offset just past the
   * first frame boundary reached in the chunk when `stopAtBoundary` (-1 if none), else the chunk's length.
   */
  scan(chunk: Uint8Array, stopAtBoundary = false): number | FrameProblem {
    let at = 0;
    const n = chunk.length;
    while (at < n) {
      if (this.payloadLeft > 0) {
        const skip = Math.min(this.payloadLeft, n - at);
        this.payloadLeft -= skip;
        at += skip;
        if (this.payloadLeft === 0 && stopAtBoundary) return at;
        continue;
      }
      this.head[this.headRead++] = chunk[at++]!;
      if (this.headRead === 2) {
        const len7 = this.head[1]! & 0x7f;
        const maskBit = (this.head[1]! & 0x80) !== 0;
        if (maskBit !== this.masked) return { code: 1002, reason: this.masked ? 'unmasked client frame' : 'masked server frame' };
        this.headSize = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (maskBit ? 4 : 0);
      }
      if (this.headRead < this.headSize) continue;
      const problem = this.frameRead();
      if (problem) return problem;
      if (this.payloadLeft === 0 && stopAtBoundary) return at;
    }
    return stopAtBoundary ? -1 : n;
  }

  /** A whole frame head has been read: checks it and sets up its payload. */
  private frameRead(): FrameProblem | null {
    const h = this.head;
    const opcode = h[0]! & 0x0f;
    const len7 = h[1]! & 0x7f;
    let length: number;
    if (len7 === 126) length = (h[2]! << 8) | h[3]!;
    else if (len7 === 127) {
      const high = ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!;
      // Past 2^53 a length is not a safe number; no message that large is allowed anyway.
      if (high > 0x1fffff) return { code: 1009, reason: 'frame too large' };
      length = high * 2 ** 32 + ((h[6]! << 24) >>> 0) + (h[7]! << 16) + (h[8]! << 8) + h[9]!;
    } else length = len7;
    this.headRead = 0;
    this.headSize = 2;
    if (opcode >= 8) {
      // Control frames: at most 125 bytes, never fragmented; they do not count in the message between them.
      if (length > 125 || (h[0]! & 0x80) === 0) return { code: 1002, reason: 'malformed control frame' };
    } else {
      this.messageBytes = opcode === 0 ? this.messageBytes + length : length;
      if (this.messageBytes > this.maxMessageBytes) {
        return { code: 1009, reason: `message larger than ${this.maxMessageBytes} bytes` };
      }
    }
    this.payloadLeft = length;
    return null;
  }
}

/**
 * A close frame with `code` and `reason` (at most 123 bytes of UTF-8): masked with a random key when the gateway
 * sends it to a backend, as a client must.
 */
export function closeFrame(code: number, reason: string, masked: boolean): Buffer {
  const text = Buffer.from(reason, 'utf8').subarray(0, 123);
  const payload = Buffer.alloc(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  const frame = Buffer.alloc(2 + (masked ? 4 : 0) + payload.length);
  frame[0] = 0x88;
  frame[1] = (masked ? 0x80 : 0) | payload.length;
  if (!masked) {
    payload.copy(frame, 2);
    return frame;
  }
  const key = randomBytes(4);
  key.copy(frame, 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i]! ^ key[i & 3]!;
  return frame;
}
