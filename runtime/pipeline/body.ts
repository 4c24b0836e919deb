// Reading a body stream into one buffer, with a size cap (the gateway and the HTTP effect both need it).

/**
 * Iterates a body without destroying it when the loop stops early. (A Node Readable's async iterator destroys the
 * stream on `break`/`throw`; for a client's request that resets the connection before the gateway can answer 413.)
 */
export function chunksOf(stream: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  const readable = stream as { iterator?: (o: { destroyOnReturn: boolean }) => AsyncIterable<Uint8Array> };
  return typeof readable.iterator === 'function' ? readable.iterator({ destroyOnReturn: false }) : stream;
}

/** The body's bytes, or null as soon as it exceeds `maxBytes` (the stream is then left for the caller to handle). */
export async function collectBody(stream: AsyncIterable<Uint8Array>, maxBytes: number): Promise<Uint8Array | null> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunksOf(stream)) {
    size += chunk.byteLength;
    if (size > maxBytes) return null;
    chunks.push(chunk);
  }
  return concatChunks(chunks, size);
}

/** `chunks` (`size` bytes in all) as one buffer; the chunk itself when there is one. */
export function concatChunks(chunks: readonly Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const body = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return body;
}
