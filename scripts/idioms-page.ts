// Writes docs/assemblyscript-for-typescript-authors.md from the table of idioms the build's messages use
// (sdk/build/idioms.ts). Run after editing the table: node scripts/build.mjs && node dist/scripts/idioms-page.js
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../runtime/assets/repo-root.ts';
import { idiomsPage } from '../sdk/build/idioms.ts';

const file = join(repoRoot(), 'docs', 'assemblyscript-for-typescript-authors.md');
writeFileSync(file, idiomsPage());
console.log(`wrote ${file}`);
