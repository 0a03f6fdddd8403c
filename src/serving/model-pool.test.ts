/**
 * ModelPool over a real registry (SQLite metadata, files artifacts) and ALS models fitted here: loads
 * the versions experiments name, hands out the champion for the champion's version, remembers a failed
 * load (and retries it later), respects its bound and evicts versions no longer named.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModelVersion } from '../domain/types.ts';
import { createWorld, type World } from '../../test/fixtures/serving-world.ts';
import { ChampionHolder } from './champion.ts';
import { ModelPool } from './model-pool.ts';

describe('ModelPool', () => {
  let world: World;
  let champion: ChampionHolder;
  let versions: ModelVersion[];

  beforeEach(async () => {
    world = await createWorld();
    versions = [];
    for (let i = 0; i < 3; i++) versions.push(await world.registerModel({ scrambled: i > 0 }));
    await world.registry.promote(versions[0].version);
    champion = new ChampionHolder(world.registry, world.metrics, world.logger);
    await champion.refresh();
  });
  afterEach(() => world.close());

  it('loads named versions, shares the champion, evicts what is no longer named', async () => {
    const pool = new ModelPool(world.registry, () => champion.get(), world.logger);
    await pool.sync([versions[0].version, versions[1].version, versions[2].version]);
    expect(pool.get(versions[0].version)).toBe(champion.get());
    expect(pool.get(versions[1].version)?.version.version).toBe(versions[1].version);
    expect(pool.get(versions[2].version)?.version.version).toBe(versions[2].version);
    expect(pool.models()).toHaveLength(2);
    await pool.sync([versions[2].version]);
    expect(pool.get(versions[1].version)).toBeNull();
    expect(pool.miss(versions[1].version)).toBe('not_named');
    expect(pool.models().map((m) => m.version.version)).toEqual([versions[2].version]);
  });

  it('remembers a failed load, serves nothing for it, and retries after retryMs', async () => {
    let now = 0;
    const pool = new ModelPool(world.registry, () => champion.get(), world.logger, {
      retryMs: 1000,
      now: () => now,
    });
    // The artifact is gone: the registry cannot load it.
    const bytes = await world.artifacts.get(versions[1].artifactPath);
    await world.artifacts.delete(versions[1].artifactPath);
    await pool.sync([versions[1].version, 'missing-version']);
    expect(pool.get(versions[1].version)).toBeNull();
    expect(pool.miss(versions[1].version)).toBe('failed');
    expect(pool.error('missing-version')).toMatch(/not found/);
    // Back, but within retryMs a sync does not hammer the registry; after it, the load is tried again.
    await world.artifacts.put(versions[1].artifactPath, bytes);
    await pool.sync([versions[1].version]);
    expect(pool.miss(versions[1].version)).toBe('failed');
    now = 2000;
    await pool.sync([versions[1].version]);
    expect(pool.get(versions[1].version)?.version.version).toBe(versions[1].version);
    expect(pool.error(versions[1].version)).toBeNull();
  });

  it('holds at most maxModels; the rest are served by the champion', async () => {
    const pool = new ModelPool(world.registry, () => champion.get(), world.logger, { maxModels: 1 });
    await pool.sync([versions[1].version, versions[2].version]);
    expect(pool.get(versions[1].version)).not.toBeNull();
    expect(pool.get(versions[2].version)).toBeNull();
    expect(pool.miss(versions[2].version)).toBe('pool_full');
  });
});
