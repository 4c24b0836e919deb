import { buildFixture, makeExchange, newHost } from '../test/support/policies.ts';
const { host } = newHost();
const which = process.env.WHICH ?? 'ops';
const headers: Record<string, string> = { 'x-api-key': 'demo-key', host: 'api.example.com', 'user-agent': 'bench', accept: '*/*' };
const many: Record<string, string> = { ...headers };
for (let i = 0; i < 20; i++) { many[`x-read-${i}`] = `read-value-${i}`; many[`x-remove-${i}`] = `remove-value-${i}`; }
const b = which === 'ops'
  ? host.bind({ id: 'bench/ops', phase: 'inbound', module: await host.load(await buildFixture('header-ops')) })
  : host.bind({ id: 'bench/check', phase: 'inbound', module: await host.load(await buildFixture('check-header')), config: { name: 'x-api-key', values: ['demo-key'] } });
await b.warm();
const h = which === 'ops' ? many : headers;
const end = Date.now() + 6000;
let n = 0;
while (Date.now() < end) { for (let i = 0; i < 200; i++) { await b.run('inbound', makeExchange({ headers: h })); n++; } }
console.log(n);
