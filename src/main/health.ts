/**
 * Readiness per process role: each root lists the checks that matter to it. A critical check failing
 * makes the process not ready (503); a non-critical one is reported (ok: false, with why) without taking
 * the process out of rotation — e.g. an API replica keeps serving recommendations while PostgreSQL is
 * down, and says so.
 */
import type { HealthCheck, HealthService } from '../monitoring/health.ts';
import type { ChampionHolder } from '../serving/champion.ts';

export interface NamedCheck {
  name: string;
  critical: boolean;
  run(): Promise<HealthCheck>;
}

export class Health implements HealthService {
  /** Set while the process is still starting (e.g. seeding demo data); readiness is false meanwhile. */
  starting: string | null = null;

  constructor(
    private readonly checks: NamedCheck[],
    private readonly timeoutMs = 2000,
  ) {}

  async ready(): Promise<{ ready: boolean; checks: Record<string, HealthCheck> }> {
    const results = await Promise.all(this.checks.map((c) => this.runOne(c)));
    const checks: Record<string, HealthCheck> = {};
    let ready = true;
    this.checks.forEach((c, i) => {
      checks[c.name] = results[i];
      if (c.critical && !results[i].ok) ready = false;
    });
    if (this.starting) {
      checks.startup = { ok: false, detail: this.starting };
      ready = false;
    }
    return { ready, checks };
  }

  private async runOne(check: NamedCheck): Promise<HealthCheck> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        check.run(),
        new Promise<HealthCheck>((resolve) => {
          timer = setTimeout(
            () => resolve({ ok: false, detail: `no answer within ${this.timeoutMs} ms` }),
            this.timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      return { ok: false, detail: `unreachable: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A check that passes when `probe` resolves; `what` names the dependency in the detail. */
export function pingCheck(
  name: string,
  critical: boolean,
  probe: () => Promise<unknown>,
  note = '',
): NamedCheck {
  return {
    name,
    critical,
    async run() {
      try {
        await probe();
        return { ok: true };
      } catch (err) {
        return { ok: false, detail: `unreachable: ${(err as Error).message}${note}` };
      }
    },
  };
}

/** The model check: never critical (the fallback chain always answers), but says what is served. */
export function modelCheck(champion: ChampionHolder): NamedCheck {
  return {
    name: 'model',
    critical: false,
    run() {
      const sm = champion.get();
      if (sm)
        return Promise.resolve({
          ok: true,
          detail: `serving ${sm.version.version} (${sm.version.algorithm})`,
        });
      if (champion.lastError)
        return Promise.resolve({ ok: true, detail: `fallback only: ${champion.lastError}` });
      return Promise.resolve({
        ok: true,
        detail: 'no trained model yet: answers come from the popular fallback',
      });
    },
  };
}

/** The popular fallback's input: how many items have popularity in the online state. */
export function fallbackCheck(count: () => Promise<number>): NamedCheck {
  return {
    name: 'fallback',
    critical: true,
    async run() {
      const n = await count();
      return n > 0
        ? { ok: true, detail: `${n} items with popularity` }
        : { ok: true, detail: 'no events yet: popular lists are empty' };
    },
  };
}
