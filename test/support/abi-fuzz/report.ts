// Summaries of a fuzz run: what ran, how calls ended, and the broken bounds grouped into distinct breaks (one line per
// check and family, with the first case that showed it), which is what a person fixing the host reads first.

import type { ReportedBreak, RunReport } from './supervisor.ts';

export interface DistinctBreak {
  check: string;
  family: string;
  variant: string;
  lang: string;
  count: number;
  first: ReportedBreak;
}

/** Breaks grouped by (check, family, variant): the same promise broken the same way by many cases is one finding. */
export function distinctBreaks(breaks: readonly ReportedBreak[]): DistinctBreak[] {
  const groups = new Map<string, DistinctBreak>();
  for (const b of breaks) {
    const key = `${b.check}\u0000${b.family}\u0000${b.variant}`;
    const g = groups.get(key);
    if (g) g.count++;
    else groups.set(key, { check: b.check, family: b.family, variant: b.variant, lang: b.lang, count: 1, first: b });
  }
  return [...groups.values()].sort((a, b) => a.check.localeCompare(b.check) || a.family.localeCompare(b.family) || a.variant.localeCompare(b.variant));
}

export function summarize(r: RunReport): string {
  const lines: string[] = [];
  const loaded = r.verdicts.filter((v) => v.loaded).length;
  const refused = r.verdicts.filter((v) => v.refused).length;
  const skipped = r.verdicts.filter((v) => v.skipped).length;
  const outcomes = new Map<string, number>();
  for (const v of r.verdicts) for (const c of v.calls) outcomes.set(c.outcome, (outcomes.get(c.outcome) ?? 0) + 1);
  lines.push(
    `fuzz:abi seed ${r.seed} (${r.runtime}): ${r.verdicts.length} cases in ${(r.durationMs / 1000).toFixed(1)} s, ${loaded} loaded, ${refused} refused at load, ${skipped} skipped, ${r.processes} process(es)`,
  );
  if (r.cSkipped) lines.push(`  C templates skipped: ${r.cSkipped}`);
  lines.push(`  call outcomes: ${[...outcomes].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  const unconfirmed = r.verdicts.filter((v) => v.unconfirmed?.length);
  if (unconfirmed.length > 0) {
    lines.push(`  time bounds broken once but not on a rerun (not counted): cases ${unconfirmed.map((v) => v.index).join(', ')}`);
  }
  const distinct = distinctBreaks(r.breaks);
  lines.push(`  ${r.breaks.length} broken bounds, ${distinct.length} distinct (check / family/variant: count, first case):`);
  for (const d of distinct) {
    lines.push(`    ${d.check} / ${d.family}${d.variant ? `/${d.variant}` : ''} (${d.lang}): ${d.count}, first case ${d.first.index}: ${d.first.detail}`);
    lines.push(`      module: ${d.first.caseDetail}`);
    lines.push(`      source: ${d.first.sourceFile}`);
    lines.push(`      reproduce: ${d.first.reproduce}`);
  }
  return lines.join('\n');
}
