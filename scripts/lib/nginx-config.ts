// The nginx configuration the benchmarks compare the gateway with: one worker, its files in `dir`, a keep-alive
// upstream to the benchmark backend, and the one server block that differs (HTTP/1.1, or HTTP/2 on TLS).

import { join } from 'node:path';

/** nginx.conf with one worker and upstream keepalive 64 to `backendPort`; `listen` is the server's listen directive. */
export function nginxProxyConfig(dir: string, backendPort: number, listen: string, serverLines: string[] = []): string {
  return [
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 4096; }',
    'http {',
    `  access_log ${join(dir, 'access.log')};`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(dir, t)};`),
    `  upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }`,
    '  server {',
    `    listen ${listen};`,
    ...serverLines.map((line) => `    ${line}`),
    '    location / {',
    '      proxy_pass http://backend;',
    '      proxy_http_version 1.1;',
    '      proxy_set_header Connection "";',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');
}
