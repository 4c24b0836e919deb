// Content codings (RFC 9110 8.4) of the bodies policies read. A policy that declares `requestBody` or `responseBody`
// reads the body decoded: when the gateway holds a body for such a policy and the body has a Content-Encoding the
// gateway knows, it decodes it first, bounded by the limit that body is held under, and takes the Content-Encoding off
// the headers the policies see (so the header describes what they read). What goes on is then one of two things:
//   - the body is still the decoded buffer the policies were given (they read it, changed nothing): the bytes as they
//     came go on, with their Content-Encoding, not encoded again;
//   - a policy wrote a body (or set a Content-Encoding of its own): what the policies made goes on as it is.
// Bodies no policy reads are never held or decoded here: they stream through with their Content-Encoding.

import { constants as bufferConstants } from 'node:buffer';
import { promisify } from 'node:util';
import {
  brotliDecompress,
  brotliDecompressSync,
  gunzip,
  gunzipSync,
  inflate,
  inflateRaw,
  inflateRawSync,
  inflateSync,
  type InputType,
  type ZlibOptions,
} from 'node:zlib';
import type { EncodedBody, HeaderMap } from '../policy-host/exchange.ts';

/** The codings the gateway decodes, as a 415 names them in Accept-Encoding. */
export const DECODED_CODINGS = ['gzip', 'x-gzip', 'deflate', 'br'] as const;

/** More codings than this on one body are refused: each is a pass over up to the whole limit. */
const MAX_CODINGS = 4;

/**
 * Decoded bytes the event loop inflates itself: a body that decodes within this is done in place, in microseconds
 * (about 10 us for a small JSON body, where handing it to libuv's thread pool cost 100-160 us of CPU, measured); one
 * that does not is decoded again on the pool, up to the limit. Inflating this much holds the loop about 0.2 ms.
 */
const INLINE_OUTPUT_BYTES = 128 * 1024;

type Decoder = (input: InputType, options: ZlibOptions) => Buffer;
type PooledDecoder = (input: InputType, options: ZlibOptions) => Promise<Buffer>;
const DECODERS: Record<'gzip' | 'deflate' | 'deflate-raw' | 'br', { inline: Decoder; pooled: PooledDecoder }> = {
  gzip: { inline: gunzipSync, pooled: promisify(gunzip) as PooledDecoder },
  deflate: { inline: inflateSync, pooled: promisify(inflate) as PooledDecoder },
  'deflate-raw': { inline: inflateRawSync, pooled: promisify(inflateRaw) as PooledDecoder },
  br: { inline: brotliDecompressSync, pooled: promisify(brotliDecompress) as PooledDecoder },
};

/** Why a body could not be decoded; `message` names the body, its Content-Encoding and what is wrong. */
export class ContentCodingError extends Error {
  constructor(
    /** unsupported: a coding the gateway does not decode; too-large: it inflates past the limit; malformed: it does not decode. */
    readonly kind: 'unsupported' | 'too-large' | 'malformed',
    message: string,
  ) {
    super(message);
    this.name = 'ContentCodingError';
  }
}

/** A request or a response as the gateway holds it for its policies. */
export interface CodedMessage {
  body: Uint8Array | null;
  headers: HeaderMap;
  encoded?: EncodedBody | null;
}

/**
 * Decodes `message`'s body for the policies that read it, when its Content-Encoding names a coding: the body becomes
 * the decoded bytes, the header goes, and `message.encoded` keeps the bytes as they came. An empty body (a HEAD
 * response, a 304) has nothing to decode and is left as it is. Throws ContentCodingError; `what` names the body in its
 * message ("request body", "backend response body").
 */
export async function decodeForPolicies(message: CodedMessage, maxBytes: number, what: string): Promise<void> {
  const body = message.body;
  const header = message.headers.get('content-encoding');
  if (body === null || body.byteLength === 0 || header === undefined) return;
  const codings = codingsOf(header);
  if (codings.length === 0) return;
  const named = header.join(', ');
  if (codings.length > MAX_CODINGS) {
    throw new ContentCodingError('unsupported', `the ${what} has ${codings.length} content codings (Content-Encoding ${named}); the gateway decodes at most ${MAX_CODINGS}`);
  }
  const unknown = codings.find((c) => !(DECODED_CODINGS as readonly string[]).includes(c));
  if (unknown !== undefined) {
    throw new ContentCodingError(
      'unsupported',
      `the ${what} has Content-Encoding ${named}; the gateway decodes ${DECODED_CODINGS.slice(0, -1).join(', ')} and ${DECODED_CODINGS.at(-1)} for the policies that read it, not ${unknown}`,
    );
  }
  const limit = Math.min(maxBytes, bufferConstants.MAX_LENGTH);
  let bytes: Uint8Array = body;
  // Applied in the order listed, so undone from the last.
  for (let i = codings.length - 1; i >= 0; i--) {
    const input = bytes;
    try {
      bytes = await decode(decoderFor(codings[i]!, input), input, limit);
      if (codings[i] === 'br' && canCheckBrotliEnd) await wholeBrotli(input);
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new ContentCodingError('too-large', `the ${what} inflates past ${maxBytes} bytes (Content-Encoding ${named})`);
      }
      throw new ContentCodingError('malformed', `the ${what}'s Content-Encoding ${named} does not decode (${codings[i]}: ${(err as Error).message})`);
    }
  }
  message.encoded = { bytes: body, coding: header, decoded: bytes };
  message.body = bytes;
  message.headers.delete('content-encoding');
}

/**
 * The body as it came, with its Content-Encoding, when the policies read it and changed nothing: the message's body is
 * still the buffer decoded for them and they set no Content-Encoding. Null otherwise: the body goes as it is.
 */
export function unchangedEncoding(message: CodedMessage): EncodedBody | null {
  const encoded = message.encoded;
  if (!encoded || message.body !== encoded.decoded || message.headers.has('content-encoding')) return null;
  return encoded;
}

/** Puts back the body as it came and its Content-Encoding, when the policies changed nothing (unchangedEncoding). */
export function restoreEncoding(message: CodedMessage): void {
  const encoded = unchangedEncoding(message);
  if (encoded === null) return;
  message.body = encoded.bytes;
  message.headers.set('content-encoding', encoded.coding);
  message.encoded = null;
}

/**
 * The Accept-Encoding to send the backend of a response the policies read: the client's, keeping only the codings the
 * gateway decodes and `identity`, so that a backend that honours it answers in one of them (browsers also offer zstd).
 * `*` goes too; when nothing is left, `identity`.
 */
export function decodableAcceptEncoding(values: readonly string[]): string {
  const kept: string[] = [];
  for (const value of values) {
    for (const raw of value.split(',')) {
      const item = raw.trim();
      const coding = item.split(';', 1)[0]!.trim().toLowerCase();
      if (coding === 'identity' || (DECODED_CODINGS as readonly string[]).includes(coding)) kept.push(item);
    }
  }
  return kept.length === 0 ? 'identity' : kept.join(', ');
}

/** The codings of a Content-Encoding, in the order they were applied, lowercased, `identity` left out. */
export function codingsOf(values: readonly string[]): string[] {
  const codings: string[] = [];
  for (const value of values) {
    for (const raw of value.split(',')) {
      const coding = raw.trim().toLowerCase();
      if (coding !== '' && coding !== 'identity') codings.push(coding);
    }
  }
  return codings;
}

/**
 * Whether the platform's DecompressionStream decodes brotli, to check that a br body is one whole stream. Deno's
 * node:zlib (2.9) takes a brotli stream cut short for a whole one, returning what decoded so far; its
 * DecompressionStream('brotli') tells, but bounds nothing (it inflates the whole input in one chunk), so it is asked
 * only after node:zlib decoded the same bytes within the limit. Node's node:zlib tells, and its DecompressionStream
 * (20) has no brotli: known by what the platform has, not by its name.
 */
const canCheckBrotliEnd = (() => {
  try {
    new DecompressionStream('brotli' as CompressionFormat);
    return true;
  } catch {
    return false;
  }
})();

/** Rejects when `input` is not one whole brotli stream (cut short, or followed by other bytes). */
async function wholeBrotli(input: Uint8Array): Promise<void> {
  const decoded = new Blob([input as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('brotli' as CompressionFormat));
  const reader = decoded.getReader();
  while (!(await reader.read()).done);
}

/** `input` decoded, at most `limit` bytes (past it: ERR_BUFFER_TOO_LARGE): in place when it is small, else on the pool. */
async function decode(decoder: { inline: Decoder; pooled: PooledDecoder }, input: Uint8Array, limit: number): Promise<Uint8Array> {
  const inline = Math.min(limit, INLINE_OUTPUT_BYTES);
  try {
    return decoder.inline(input, { maxOutputLength: inline });
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_BUFFER_TOO_LARGE' || inline === limit) throw err;
  }
  return decoder.pooled(input, { maxOutputLength: limit });
}

function decoderFor(coding: string, input: Uint8Array): { inline: Decoder; pooled: PooledDecoder } {
  switch (coding) {
    case 'br':
      return DECODERS.br;
    case 'deflate':
      // HTTP's deflate is the zlib format (RFC 1950); some servers send the bare DEFLATE data, as browsers accept.
      return zlibWrapped(input) ? DECODERS.deflate : DECODERS['deflate-raw'];
    default:
      return DECODERS.gzip;
  }
}

/** Whether `input` starts with a zlib header (RFC 1950 2.2): method 8 (deflate), a window of at most 32 KiB, the check bits. */
function zlibWrapped(input: Uint8Array): boolean {
  if (input.byteLength < 2) return false;
  const cmf = input[0]!;
  return (cmf & 0x0f) === 8 && cmf >> 4 <= 7 && ((cmf << 8) | input[1]!) % 31 === 0;
}
