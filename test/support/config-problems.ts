// The problems of a configuration document that must be refused, checked for the shape every refusal has.

import assert from 'node:assert/strict';
import { ConfigError } from '../../runtime/config/config-error.ts';
import { parseGatewayDocument } from '../../runtime/config/parse-document.ts';
import { prepareDocument } from '../../runtime/config/prepare-document.ts';
import type { PolicySources } from '../../runtime/config/policy-sources.ts';
import { repoRoot } from '../../runtime/assets/repo-root.ts';
import { newHost } from './policies.ts';

/** Parses `text` (named `name`) expecting a ConfigError; returns its problems. */
export function problemsOf(text: string, name = 'gw.yaml'): { where: string; message: string }[] {
  try {
    parseGatewayDocument(text, name);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    // The message lists every problem, one per line.
    const lines = err.message.split('\n');
    assert.equal(lines.length, err.problems.length + 1);
    for (const p of err.problems) assert.ok(err.message.includes(`${p.where}: ${p.message}`));
    return err.problems;
  }
  assert.fail('the document was accepted');
}

/** The messages of the problems at `where` (joined by " | "); fails listing every problem when there is none. */
export function messageAt(problems: { where: string; message: string }[], where: string): string {
  const found = problems.filter((p) => p.where === where).map((p) => p.message);
  assert.ok(found.length > 0, `no problem at ${where}; problems:\n${problems.map((p) => `${p.where}: ${p.message}`).join('\n')}`);
  return found.join(' | ');
}

/**
 * Parses and binds `text` as gw.yaml with the repository's policies (`policies`), expecting the binding to refuse it
 * (the problems only binding finds: expressions, grants, templates); returns the ConfigError's problems.
 */
export async function bindProblems(text: string, policies: PolicySources): Promise<{ where: string; message: string }[]> {
  try {
    await prepareDocument(text, { host: newHost().host, baseDir: repoRoot(), policies, sourceName: 'gw.yaml' });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail('the document was accepted');
}
