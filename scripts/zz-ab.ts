import { buildFixture, makeExchange, newHost } from '../test/support/policies.ts';
const { host } = newHost();
const cfg = { name: 'x-api-key', values: ['demo-key'] };
const a = host.bind({ id: 'a', phase: 'inbound', module: await host.load(await buildFixture(process.env.A ?? 'zz-old')), config: cfg });
const b = host.bind({ id: 'b', phase: 'inbound', module: await host.load(await buildFixture(process.env.B ?? 'check-header')), config: cfg });
await a.warm(); await b.warm();
const headers: Record<string, string> = { 'x-api-key': 'demo-key', host: 'api.example.com', 'user-agent': 'bench', accept: '*/*' };
const DONE = Promise.resolve();
function sync(x: typeof a, ex: ReturnType<typeof makeExchange>): Promise<void> { try { return x.runNow('inbound', ex) ?? DONE; } catch (e) { return Promise.reject(e); } }
async function batch(x: typeof a, n: number) {
  const exs = Array.from({ length: n }, () => makeExchange({ headers }));
  const t = process.hrtime.bigint();
  if (x === a || !process.env.SYNC) for (let i = 0; i < n; i++) await x.run('inbound', exs[i]!); else for (let i = 0; i < n; i++) await sync(x, exs[i]!);
  return Number(process.hrtime.bigint() - t) / 1000 / n;
}
let ma = Infinity, mb = Infinity; const r: number[] = [];
for (let i = 0; i < 60; i++) { const x = await batch(a, 2000); const y = await batch(b, 2000); ma = Math.min(ma, x); mb = Math.min(mb, y); r.push(y / x); }
r.sort((p, q) => p - q);
console.log(`A min ${ma.toFixed(3)} B min ${mb.toFixed(3)} median paired B/A ${r[30]!.toFixed(3)}`);
