// Build problems as the author sees them: a file, a line and a column in the author's sources, and a message.

import path from 'node:path';

export interface BuildDiagnostic {
  /** Absolute path of the file (or `~lib/...` for the AssemblyScript standard library). */
  file: string;
  /** 1-based; 0 when the problem has no position. */
  line: number;
  /** 1-based, in UTF-16 code units like the compiler; 0 when the problem has no position. */
  column: number;
  message: string;
}

export class PolicyBuildError extends Error {
  readonly diagnostics: BuildDiagnostic[];

  constructor(message: string, diagnostics: BuildDiagnostic[] = []) {
    super(message);
    this.name = 'PolicyBuildError';
    this.diagnostics = diagnostics;
  }
}

/** A path for messages: relative to the working directory when inside it. */
export function displayPath(file: string): string {
  if (!path.isAbsolute(file)) return file;
  const rel = path.relative(process.cwd(), file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

function formatDiagnostic(d: BuildDiagnostic): string {
  const where = d.line > 0 ? `${displayPath(d.file)}:${d.line}:${d.column}` : displayPath(d.file);
  return `${where}: ${d.message}`;
}

/** A PolicyBuildError whose message is `summary` followed by one line per diagnostic. */
export function buildError(summary: string, diagnostics: BuildDiagnostic[]): PolicyBuildError {
  const lines = diagnostics.map(formatDiagnostic);
  return new PolicyBuildError([summary, ...lines].join('\n'), diagnostics);
}

/** Line and column (1-based) of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}
