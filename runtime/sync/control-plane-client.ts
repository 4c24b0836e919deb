// The gateway's side of the control plane's gateway API: every call carries the gateway token, is bounded by a timeout
// (a control plane that does not answer counts as unreachable), and goes through one connection pool, which trusts
// the CA given in GATEHOUSE_CONFIG_CA_FILE as well as the system's (a control plane with a private certificate).

import { Agent, request } from 'undici';
import { gatewayAuthorization } from '../gateway-api/endpoints.ts';
import type { GatewayTokenFile } from './gateway-token.ts';

export interface ControlPlaneClientOptions {
  /** The control plane's base URL, e.g. https://control-plane.internal:7070. */
  url: string;
  /** The gateway token (GATEHOUSE_TOKEN), or the file holding it (GATEHOUSE_TOKEN_FILE), read again before each call. */
  token: string | GatewayTokenFile;
  /** PEM certificates to trust besides the system's, for an HTTPS control plane with a private CA. */
  ca?: string;
  /** A call slower than this fails (default 5 s). */
  timeoutMs?: number;
}

export interface ControlPlaneReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

export class ControlPlaneClient {
  readonly url: string;
  private readonly tokenSource: string | GatewayTokenFile;
  private readonly agent: Agent;
  private readonly timeoutMs: number;

  constructor(options: ControlPlaneClientOptions) {
    this.url = options.url;
    this.tokenSource = options.token;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.agent = new Agent({ connections: 4, ...(options.ca ? { connect: { ca: options.ca } } : {}) });
  }

  /** The token the calls carry (from a file: the one read last). */
  get token(): string {
    return typeof this.tokenSource === 'string' ? this.tokenSource : this.tokenSource.current;
  }

  /** The absolute URL of a gateway API path. */
  endpoint(path: string): string {
    return new URL(path, this.url).toString();
  }

  /** Throws when the control plane cannot be reached or does not answer in time; any status is an answer. */
  async call(
    method: 'GET' | 'POST',
    path: string,
    options: { headers?: Record<string, string>; json?: unknown; timeoutMs?: number } = {},
  ): Promise<ControlPlaneReply> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const token = typeof this.tokenSource === 'string' ? this.tokenSource : await this.tokenSource.refresh();
    const res = await request(this.endpoint(path), {
      method,
      dispatcher: this.agent,
      headers: {
        authorization: gatewayAuthorization(token),
        ...(options.json !== undefined ? { 'content-type': 'application/json' } : {}),
        ...options.headers,
      },
      body: options.json !== undefined ? JSON.stringify(options.json) : undefined,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = new Uint8Array(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

/** A reply's body as text. */
export const textOf = (reply: ControlPlaneReply): string => new TextDecoder().decode(reply.body);
