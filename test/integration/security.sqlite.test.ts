/** Runs the keys, audit and settings conformance suite against SQLite files (one fresh file per test). */
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.ts';
import { describeSecurityConformance } from '../../src/storage/conformance/security.conformance.ts';
import { openStore } from '../../src/storage/open.ts';

const dir = mkdtempSync(join(tmpdir(), 'cairn-security-sqlite-'));
let n = 0;

describeSecurityConformance(
  'sqlite',
  () =>
    openStore(
      loadConfig({
        env: {},
        overrides: { dataDir: dir, store: { url: `sqlite://${join(dir, `x-${n++}.db`)}` } },
      }),
    ),
  () => rm(dir, { recursive: true, force: true }),
);
