// Waiting on a connection the proxy writes a request body into: the body is read no faster than the backend takes it.

/** Resolves when `stream` asks for more ('drain') or can take no more ('close'). */
export function drainedOrClosed(stream: { on(event: string, listener: () => void): unknown; off(event: string, listener: () => void): unknown }): Promise<void> {
  return new Promise<void>((resolve) => {
    const go = () => {
      stream.off('drain', go);
      stream.off('close', go);
      resolve();
    };
    stream.on('drain', go);
    stream.on('close', go);
  });
}
