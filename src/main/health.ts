/**
 * Readiness per process role: each root lists the checks that matter to it. A critical check failing
 * makes the process not ready (503); a non-critical one is reported (ok: false, with why) without taking
 * the process out of rotation — e.g. an API replica keeps serving recommendations while PostgreSQL is
 * down, and says so.
 */
import { formatSeconds, type FreshnessMonitor } from '../monitoring/freshness.ts';
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

  /** Adds a check after construction (e.g. the other tenants' readiness, known once they are built). */
  add(check: NamedCheck): void {
    this.checks.push(check);
  }

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

/**
 * The model check: never critical (the fallback chain always answers), but says what is served and,
 * with a freshness monitor, how fresh it is: `status` is `stale` once the served champion is older than
 * serving.maxModelAgeSeconds, `degraded` when the last training failed or the champion failed to load,
 * else `ok`; the detail says why, and says so when the training state is not current (registry down).
 */
export function modelCheck(champion: ChampionHolder, freshness?: FreshnessMonitor): NamedCheck {
  return {
    name: 'model',
    critical: false,
    run() {
      const sm = champion.get();
      let detail: string;
      if (sm) detail = `serving ${sm.version.version} (${sm.version.algorithm})`;
      else if (champion.lastError) detail = `fallback only: ${champion.lastError}`;
      else detail = 'no trained model yet: answers come from the popular fallback';
      if (!freshness) {
        const status = champion.lastError && !sm ? 'degraded' : 'ok';
        return Promise.resolve({ ok: true, status, detail });
      }
      const { status, ageSeconds, reasons } = freshness.assess();
      if (sm && ageSeconds !== null) detail += `, ${formatSeconds(ageSeconds)} old`;
      // The load error is already the detail when nothing is served.
      const extra = reasons.filter((r) => sm || r !== champion.lastError);
      if (extra.length > 0) detail += `; ${extra.join('; ')}`;
      return Promise.resolve({ ok: true, status, detail });
    },
  };
}

/**
 * A worker's view of training (it serves no model): `degraded` when the newest training failed. Never
 * critical: a failed training leaves the worker able to take the next job.
 */
export function trainingCheck(freshness: FreshnessMonitor): NamedCheck {
  return {
    name: 'training',
    critical: false,
    run() {
      const s = freshness.state();
      const parts = [
        s.lastSuccess
          ? `last model ${s.lastSuccess.version} at ${new Date(s.lastSuccess.at).toISOString()}`
          : 'no model trained yet',
      ];
      if (s.lastTrainingFailed && s.lastFailure)
        parts.push(`last training failed: ${s.lastFailure.error ?? 'no error recorded'}`);
      if (!s.current) parts.push(`not current (registry unreachable: ${s.error ?? 'unknown'})`);
      return Promise.resolve({
        ok: true,
        status: s.lastTrainingFailed ? 'degraded' : 'ok',
        detail: parts.join('; '),
      });
    },
  };
}

/** The popular fallback's input: how many items have popularity in the online state. */
export function fallbackCheck(count: () => Promise<number>, critical = true): NamedCheck {
  return {
    name: 'fallback',
    critical,
    async run() {
      const n = await count();
      return n > 0
        ? { ok: true, detail: `${n} items with popularity` }
        : { ok: true, detail: 'no events yet: popular lists are empty' };
    },
  };
}
