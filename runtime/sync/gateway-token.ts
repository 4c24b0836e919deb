// The gateway token read from a file (GATEHOUSE_TOKEN_FILE), so that it can be rotated without a restart: the file is
// read again before every call to the control plane, and a new token in it is used from that call on. A Kubernetes
// Secret mounted as a volume is such a file (the kubelet replaces it, by renaming, some time after the Secret changes).
//
// The file is required at start. Afterwards, a file that is missing, empty, unreadable or holds something other than
// a whole token (one caught half-written) does not stop the gateway: the token read before stays in use, and the
// problem is logged once until the file is usable again.

import { readFile } from 'node:fs/promises';
import { readClaims } from '../gateway-api/tokens.ts';
import type { Logger } from '../telemetry/logger.ts';

/** A token file that cannot be used at start: the message names the file and what is wrong with it. */
export class TokenFileError extends Error {}

export class GatewayTokenFile {
  private token: string;
  private problem: string | null = null;

  private constructor(
    readonly file: string,
    first: string,
    private readonly logger: Logger,
  ) {
    this.token = first;
  }

  /** Reads the file for the first time; it must hold a token (else TokenFileError). */
  static async open(file: string, logger: Logger): Promise<GatewayTokenFile> {
    const read = await readToken(file);
    if ('problem' in read) throw new TokenFileError(`GATEHOUSE_TOKEN_FILE=${file}: ${read.problem}`);
    const claims = readClaims(read.token);
    logger.info('gateway token read from its file', {
      file,
      ...(claims ? { gateway: claims.gateway, tokenId: claims.id, expiresAt: isoSeconds(claims.expires) } : { shape: 'not a gateway token (gw2. or gw1.)' }),
    });
    return new GatewayTokenFile(file, read.token, logger);
  }

  /** The token in use now (the one read last that was whole). */
  get current(): string {
    return this.token;
  }

  /** Reads the file again, switches to a new token found there, and returns the token to send. */
  async refresh(): Promise<string> {
    const read = await readToken(this.file);
    const problem = 'problem' in read ? read.problem : readClaims(read.token) === null && read.token !== this.token ? 'it does not hold a whole gateway token (gw2.<gateway>...)' : null;
    if (problem !== null) {
      if (problem !== this.problem) {
        this.logger.warn('the gateway token file cannot be used: the token read before stays in use', { file: this.file, problem });
      }
      this.problem = problem;
      return this.token;
    }
    const token = (read as { token: string }).token;
    if (this.problem !== null) this.logger.info('the gateway token file is usable again', { file: this.file });
    this.problem = null;
    if (token !== this.token) {
      const before = readClaims(this.token);
      const after = readClaims(token)!;
      this.logger.info('gateway token changed: the new one from the file is used from now on', {
        file: this.file,
        gateway: after.gateway,
        tokenId: after.id,
        expiresAt: isoSeconds(after.expires),
        previousTokenId: before?.id ?? null,
      });
      this.token = token;
    }
    return this.token;
  }
}

async function readToken(file: string): Promise<{ token: string } | { problem: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { problem: code === 'ENOENT' ? 'the file does not exist' : `the file cannot be read (${(err as Error).message})` };
  }
  // A trailing newline (echo, an editor, kubectl's --from-file) is not part of the token.
  const token = text.trim();
  return token === '' ? { problem: 'the file is empty' } : { token };
}

const isoSeconds = (s: number) => new Date(s * 1000).toISOString();
