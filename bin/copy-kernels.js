#!/usr/bin/env node
// Copies the committed WebAssembly kernels (src/algorithms/kernels/*.wasm) into a build output, where
// the compiled loader (dist/src/algorithms/kernels/load.js) reads them beside itself. Used by
// `npm run build` and by the test that checks the compiled build: tsc copies no .wasm files.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = resolve(process.argv[2] ?? join(root, 'dist'));
const from = join(root, 'src/algorithms/kernels');
const to = join(outDir, 'src/algorithms/kernels');
mkdirSync(to, { recursive: true });
for (const f of readdirSync(from)) if (f.endsWith('.wasm')) copyFileSync(join(from, f), join(to, f));
