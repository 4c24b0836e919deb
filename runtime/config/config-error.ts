// The error every step of reading a configuration throws (parsing, the schema, semantic checks, named values, policy
// binding, a module from the control plane): every problem found, each with where it is, not only the first.

import type { DocPath } from './document-paths.ts';

export interface ConfigProblem {
  /** `<file>:<line>: <path in document>` (`<file>: <path>` when the line is not known), e.g. `gw.yaml:7: apis[0].backend.url`. */
  where: string;
  message: string;
}

/** A problem with its place as a path in the document, when it has one (syntax errors have none). */
export type LocatedProblem = ConfigProblem & { path?: DocPath };

/** A configuration that cannot be used; `problems` names every mistake found, not only the first. */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  /**
   * The path in the document of each problem (same order as `problems`; null when it has none). Kept apart from
   * `problems`, which are logged as they are: a caller that checks a document built from another (the control plane
   * checking an API of an apply file) maps these back to the places its user wrote.
   */
  readonly paths: (DocPath | null)[];

  constructor(problems: LocatedProblem[], summary = 'the gateway configuration is not valid') {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    super([`${summary} (${count}):`, ...problems.map((p) => `  ${p.where}: ${oneLine(p.message)}`)].join('\n'));
    this.name = 'ConfigError';
    this.problems = problems.map(({ where, message }) => ({ where, message }));
    this.paths = problems.map((p) => p.path ?? null);
  }
}

/** A message on one line: problems are listed one per line. */
export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}
