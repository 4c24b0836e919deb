// Entry point of `npm start` / `deno task start`.

import { startDemo } from './demo.ts';
import { Logger } from './telemetry/logger.ts';

const logger = new Logger();
const port = Number(process.env.GATEHOUSE_HTTP_PORT ?? 8080);
const server = await startDemo(port, logger);
logger.info('gatehouse policy demo listening', {
  port: server.port,
  try: [`curl -i localhost:${server.port}/echo/hello`, `curl -i -H 'x-api-key: demo-key' localhost:${server.port}/echo/hello`],
});
const stop = () => {
  logger.info('shutting down');
  void server.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
