import { buildFixture, makeExchange, newHost } from '../test/support/policies.ts';
const { host } = newHost();
const checkHeader = await host.load(await buildFixture('check-header'));
const headerOps = await host.load(await buildFixture('header-ops'));
const check = host.bind({ id: 'bench/check', phase: 'inbound', module: checkHeader, config: { name: 'x-api-key', values: ['demo-key'] } });
await check.warm();
const headers: Record<string, string> = { 'x-api-key': 'demo-key', host: 'api.example.com', 'user-agent': 'bench', accept: '*/*' };
const ops = host.bind({ id: 'bench/ops', phase: 'inbound', module: headerOps });
await ops.warm();
const many: Record<string, string> = { ...headers };
for (let i = 0; i < 20; i++) { many[`x-read-${i}`] = `read-value-${i}`; many[`x-remove-${i}`] = `remove-value-${i}`; }
async function batch(h: Record<string,string>, b: typeof check, n: number) {
  const exs = Array.from({ length: n }, () => makeExchange({ headers: h }));
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await b.run('inbound', exs[i]!);
  return Number(process.hrtime.bigint() - t) / 1000 / n;
}
const rounds = Number(process.env.ROUNDS ?? 40);
let a = Infinity, b = Infinity; const as: number[] = [], bs: number[] = [];
for (let r = 0; r < rounds; r++) {
  const x = await batch(headers, check, 2000); const y = await batch(many, ops, 300);
  as.push(x); bs.push(y); a = Math.min(a, x); b = Math.min(b, y);
}
as.sort((p, q) => p - q); bs.sort((p, q) => p - q);
console.log(`call min ${a.toFixed(2)} p25 ${as[rounds >> 2]!.toFixed(2)} | 60ops min ${b.toFixed(2)} p25 ${bs[rounds >> 2]!.toFixed(2)}`);
