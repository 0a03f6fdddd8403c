#!/usr/bin/env node
// Entry point of the `cairn` command. The sources are TypeScript; tsx compiles them on load so that
// `npx cairn …` works right after `npm ci` with no build step. With CAIRN_COMPILED=1 it runs the
// output of `npm run build` (dist/) instead, so no TypeScript loader is in the process — the way
// production runs (`node dist/src/cli/main.js`, see deploy/README.md).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

if (process.env.CAIRN_COMPILED === '1') {
  const compiled = new URL('../dist/src/cli/main.js', import.meta.url);
  if (!existsSync(fileURLToPath(compiled))) {
    process.stderr.write(
      `error: CAIRN_COMPILED=1 but ${fileURLToPath(compiled)} does not exist: run \`npm run build\` first\n`,
    );
    process.exit(1);
  }
  await import(compiled.href);
} else {
  // Imported only here so that the compiled path never loads tsx.
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
