// The problems of a configuration document that must be refused, checked for the shape every refusal has.

import assert from 'node:assert/strict';
import { ConfigError } from '../../runtime/config/config-error.ts';
import { parseGatewayDocument } from '../../runtime/config/parse-document.ts';

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
