/**
 * The commit horizon of a log table whose appends run concurrently, with no lock between them: the
 * highest seq H such that no row with seq ≤ H can still appear. BIGSERIAL hands out seqs at INSERT time
 * and concurrent transactions commit in any order, so a reader of `seq > cursor` that moved past a
 * visible seq 11 while seq 10's transaction was still open would skip 10 forever. Readers read up to H.
 *
 * The protocol. Every writer of the table first takes the schema's append lock (an advisory lock,
 * shared by ordinary appends so that they never wait for one another) as the first statement of its
 * transaction, before it draws a seq, and holds it to COMMIT or ROLLBACK. An observation reads, in one
 * statement, the highest visible seq `top` and the virtual transaction ids holding that lock. Every seq
 * ≤ top was drawn before the statement's snapshot, by a writer that by then had either finished or held
 * the lock; PostgreSQL releases a transaction's locks only after its commit is visible. So once none of
 * the observed holders holds the lock any more, every row ≤ top is visible or never will be: top is the
 * horizon. With no writer in flight, one observation is enough; otherwise a later one settles it, at the
 * latest one transaction after the appends that were in flight. Transactions of other tables, however
 * long, never hold it back.
 */
import type { Db } from './db.ts';

interface Observation {
  top: number;
  holders: Set<string>;
}

/** At most this many observations wait to settle; beyond it the oldest (lowest top) are dropped. */
const MAX_WAITING = 64;

function someIn(a: Set<string>, b: Set<string>): boolean {
  for (const x of a) if (b.has(x)) return true;
  return false;
}

export class CommitHorizon {
  private safe = 0;
  private readonly waitingFor: Observation[] = [];
  private readonly sql: string;

  constructor(
    private readonly db: Db,
    table: 'events' | 'changes',
    private readonly lockNamespace: number,
  ) {
    // Advisory locks with two int4 keys show up as classid = key1, objid = key2, objsubid = 2.
    this.sql = `SELECT COALESCE((SELECT MAX(seq) FROM ${db.s}.${table}), 0) AS top,
      ARRAY(SELECT virtualtransaction FROM pg_locks
            WHERE locktype = 'advisory' AND classid = $1::int4::oid AND objid = $2::int4::oid
              AND objsubid = 2 AND granted) AS holders`;
  }

  /** True while an observation above the settled horizon waits for writers to finish. */
  get unsettled(): boolean {
    return this.waitingFor.length > 0;
  }

  /** Observes the table once and returns the horizon, settled as far as this observation allows. */
  async advance(): Promise<number> {
    const [row] = await this.db.query<{ top: number; holders: string[] }>(this.sql, [
      this.lockNamespace,
      this.db.lockKey,
    ]);
    const now: Observation = { top: row.top, holders: new Set(row.holders) };
    if (now.top > this.safe) {
      this.waitingFor.push(now);
      if (this.waitingFor.length > MAX_WAITING) this.waitingFor.shift();
    }
    for (const o of this.waitingFor) {
      if (!someIn(o.holders, now.holders)) this.safe = Math.max(this.safe, o.top);
    }
    // What settled, and what lies at or below it, has nothing left to tell.
    const still = this.waitingFor.filter((o) => o.top > this.safe);
    this.waitingFor.splice(0, this.waitingFor.length, ...still);
    return this.safe;
  }
}
