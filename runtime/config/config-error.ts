// The error every step of reading a configuration throws (parsing, the schema, semantic checks, named values, policy
// binding, a module from the control plane): every problem found, each with where it is, not only the first.

import { formatPath, type DocPath } from './document-paths.ts';

export interface ConfigProblem {
  /** `<file>:<line>: <path in document>` (`<file>: <path>` when the line is not known), e.g. `gw.yaml:7: apis[0].backend.url`. */
  where: string;
  message: string;
}

/**
 * A problem with its place as a path in the document, when it has one (syntax errors have none). A problem in a
 * fragment's entry has `includedAt`, the include-fragment entry it was reached through; its `message` does not say so:
 * whoever writes the problem out renders the place (`includedAtText`), in its own terms.
 */
export type LocatedProblem = ConfigProblem & { path?: DocPath; includedAt?: DocPath };

/** ` (included at <place>)`: what follows the message of a problem found in a fragment, `place` being the include. */
export function includedAtText(place: string): string {
  return ` (included at ${place})`;
}

/** A configuration that cannot be used; `problems` names every mistake found, not only the first. */
export class ConfigError extends Error {
  /** Each problem as written out (logged as it is): where a fragment was included is part of its message. */
  readonly problems: ConfigProblem[];
  /**
   * The same problems as found, with their paths in the document and, for a fragment's, the include they were reached
   * through (same order as `problems`): a caller that checks a document built from another (the control plane checking
   * an API of an apply file) maps these back to the places its user wrote.
   */
  readonly located: readonly LocatedProblem[];

  constructor(problems: LocatedProblem[], summary = 'the gateway configuration is not valid') {
    const written = problems.map(({ where, message, includedAt }) => ({ where, message: includedAt ? message + includedAtText(formatPath(includedAt)) : message }));
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    super([`${summary} (${count}):`, ...written.map((p) => `  ${p.where}: ${oneLine(p.message)}`)].join('\n'));
    this.name = 'ConfigError';
    this.problems = written;
    this.located = problems;
  }
}

/** A message on one line: problems are listed one per line. */
export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}
