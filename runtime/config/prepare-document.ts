// What a gateway does with a configuration document before it uses it: parse and check it (parse-document.ts), then
// find, load and bind every policy with its configuration (policies.ts). The control plane checks what it saves through
// this same function, so that a document it accepts is one a gateway accepts.

import { parseGatewayDocument } from './parse-document.ts';
import { bindChains, type BindChainsOptions, type BoundChains } from './policies.ts';
import type { GatewayDocument } from './types.ts';

/**
 * Parses `text` (named `options.sourceName`, which picks JSON or YAML) and binds its policies. Throws ConfigError with
 * every problem: those of the document first, then, when it is well formed, those of its policies.
 */
export async function prepareDocument(text: string, options: BindChainsOptions): Promise<{ doc: GatewayDocument; chains: BoundChains }> {
  const doc = parseGatewayDocument(text, options.sourceName);
  const chains = await bindChains(doc, options);
  return { doc, chains };
}
