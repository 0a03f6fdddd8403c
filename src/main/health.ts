/** Readiness: the store answers and a recommendation can be served (a champion or the popular fallback). */
import type { HealthCheck, HealthService } from '../api/deps.ts';
import type { ChampionHolder } from '../serving/champion.ts';
import type { PopularityTracker } from '../serving/popularity.ts';
import type { Store } from '../storage/ports.ts';

export class Health implements HealthService {
  /** Set while the process is still starting (e.g. seeding demo data); readiness is false meanwhile. */
  starting: string | null = null;

  constructor(
    private readonly store: Pick<Store, 'ping'>,
    private readonly champion: ChampionHolder,
    private readonly popularity: PopularityTracker,
    private readonly pingTimeoutMs = 2000,
  ) {}

  async ready(): Promise<{ ready: boolean; checks: Record<string, HealthCheck> }> {
    const checks: Record<string, HealthCheck> = {};
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.store.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.pingTimeoutMs} ms`)),
            this.pingTimeoutMs,
          );
        }),
      ]);
      checks.store = { ok: true };
    } catch (err) {
      checks.store = { ok: false, detail: `store unreachable: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
    }
    const sm = this.champion.get();
    if (sm) checks.model = { ok: true, detail: `serving ${sm.version.version} (${sm.version.algorithm})` };
    else if (this.champion.lastError)
      checks.model = { ok: true, detail: `fallback only: ${this.champion.lastError}` };
    else checks.model = { ok: true, detail: 'no trained model yet: answers come from the popular fallback' };
    checks.fallback =
      this.popularity.size > 0
        ? { ok: true, detail: `${this.popularity.size} items with popularity` }
        : { ok: true, detail: 'no events yet: popular lists are empty' };
    if (this.starting) checks.startup = { ok: false, detail: this.starting };
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  }
}
