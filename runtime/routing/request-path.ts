// Paths that could reach outside what the configuration routes them to. A backend receives the API's backend path
// followed by the request's path below the API prefix; a dot segment (`.` or `..`) there, resolved by the backend or
// by anything between, moves the request somewhere else: `/api/../admin` is `/admin` to most servers. Many of them
// also decode `%2e` as a dot (the WHATWG URL standard does) or `%2f` and `\` as a slash before resolving. The gateway
// refuses such paths rather than normalising them: no client needs them (browsers and HTTP libraries resolve dot
// segments before sending), and a refused request cannot be read two ways.

/** Decodes only what can make a dot segment: `%2e` (`.`), `%2f` (`/`), `%5c` (`\`), and `%25` (`%`, for double encoding). */
function decodeDotsAndSlashes(s: string): string {
  return s.replace(/%(2e|2f|5c|25)/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** Rounds of decoding looked through: `%252e` is `%2e` after one and `.` after two. */
const DECODING_ROUNDS = 3;

function isDotPiece(piece: string): boolean {
  return piece === '.' || piece === '..';
}

/**
 * The first segment of `path` that is, or decodes to, a dot segment (also when decoding gives it a slash or backslash:
 * `..%2f` holds `..`); null when there is none.
 */
export function dotSegment(path: string): string | null {
  // The common case: nothing that could make a dot segment.
  if (!/[.%\\]/.test(path)) return null;
  for (const segment of path.split('/')) {
    let text = segment;
    for (let round = 0; round <= DECODING_ROUNDS; round++) {
      if (text.split(/[/\\]/).some(isDotPiece)) return segment;
      const decoded = decodeDotsAndSlashes(text);
      if (decoded === text) break;
      text = decoded;
    }
  }
  return null;
}

/** A message for a client or a log saying why `segment` was refused. */
export function dotSegmentMessage(segment: string): string {
  const what = isDotPiece(segment) ? `the dot segment "${segment}"` : `the segment "${segment}", a dot segment once decoded`;
  return `the path has ${what}: "." and ".." segments are refused, they could reach outside the API's backend path`;
}
