/**
 * PostgreSQL adapters of the experiment store and the served-answer log with its feedback (migration
 * v5). Batches travel as one JSON document (`jsonb_to_recordset`): one round trip per call.
 */
import { CairnError } from '../../errors/errors.ts';
import type {
  Experiment,
  FeedbackRecord,
  ServedItem,
  ServedRecord,
  VariantTotals,
} from '../../domain/types.ts';
import type { ExperimentStore, ServedLogStore, ServedWithFeedback } from '../ports.ts';
import {
  groupOutcomes,
  OUTCOME_ANSWERS_SQL,
  OUTCOME_FEEDBACK_SQL,
  toTotals,
  TOTALS_SQL,
  type FeedbackRow,
  type TotalsRow,
} from '../served-log-sql.ts';
import { definedFields } from '../shared.ts';
import type { Db } from './db.ts';

interface ExperimentRow {
  id: string;
  kind: string;
  status: string;
  variants: Experiment['variants'];
  unit: string;
  guard: Experiment['guard'];
  created_at: number;
  created_by: string;
  stopped_at: number | null;
  stop_reason: string | null;
}

interface ServedRow {
  request_id: string;
  mode: string;
  user_id: string;
  endpoint: string;
  experiment_id: string | null;
  variant: string | null;
  model_version: string | null;
  source: string;
  items: ServedItem[];
  at: number;
}

const EXPERIMENT_COLUMNS =
  'id, kind, status, variants, unit, guard, created_at, created_by, stopped_at, stop_reason';
const SERVED_COLUMNS =
  'request_id, mode, user_id, endpoint, experiment_id, variant, model_version, source, items, at';

const toExperiment = (r: ExperimentRow): Experiment => ({
  id: r.id,
  kind: r.kind as Experiment['kind'],
  status: r.status as Experiment['status'],
  variants: r.variants,
  unit: r.unit as Experiment['unit'],
  guard: r.guard,
  createdAt: r.created_at,
  createdBy: r.created_by,
  stoppedAt: r.stopped_at,
  stopReason: r.stop_reason,
});

/** `$1..$10` in EXPERIMENT_COLUMNS order (JSON columns as text, cast by the statement). */
const experimentValues = (e: Experiment): unknown[] => [
  e.id,
  e.kind,
  e.status,
  JSON.stringify(e.variants),
  e.unit,
  e.guard === null ? null : JSON.stringify(e.guard),
  e.createdAt,
  e.createdBy,
  e.stoppedAt,
  e.stopReason,
];

const toServed = (r: ServedRow): ServedRecord => ({
  requestId: r.request_id,
  userId: r.user_id,
  mode: r.mode as ServedRecord['mode'],
  endpoint: r.endpoint,
  experimentId: r.experiment_id,
  variant: r.variant,
  modelVersion: r.model_version,
  source: r.source as ServedRecord['source'],
  items: r.items,
  at: r.at,
});

export class PgExperiments implements ExperimentStore {
  constructor(private readonly db: Db) {}

  async create(experiment: Experiment): Promise<void> {
    await this.db.query(
      `INSERT INTO ${this.db.s}.experiments (${EXPERIMENT_COLUMNS})
       VALUES ($1, $2, $3, $4::jsonb, $5, $6::jsonb, $7, $8, $9, $10)`,
      experimentValues(experiment),
    );
  }

  async get(id: string): Promise<Experiment | null> {
    const rows = await this.db.query<ExperimentRow>(
      `SELECT ${EXPERIMENT_COLUMNS} FROM ${this.db.s}.experiments WHERE id = $1`,
      [id],
    );
    return rows.length > 0 ? toExperiment(rows[0]) : null;
  }

  async list(options: { status?: Experiment['status'] } = {}): Promise<Experiment[]> {
    const { s } = this.db;
    const rows =
      options.status === undefined
        ? await this.db.query<ExperimentRow>(
            `SELECT ${EXPERIMENT_COLUMNS} FROM ${s}.experiments ORDER BY created_at DESC, ord DESC`,
          )
        : await this.db.query<ExperimentRow>(
            `SELECT ${EXPERIMENT_COLUMNS} FROM ${s}.experiments WHERE status = $1
             ORDER BY created_at DESC, ord DESC`,
            [options.status],
          );
    return rows.map(toExperiment);
  }

  /** Read-modify-write under a row lock, so concurrent partial patches never undo each other. */
  async update(id: string, patch: Partial<Omit<Experiment, 'id'>>): Promise<Experiment> {
    const { s } = this.db;
    return this.db.tx(async (c) => {
      const found = await c.query<ExperimentRow>(
        `SELECT ${EXPERIMENT_COLUMNS} FROM ${s}.experiments WHERE id = $1 FOR UPDATE`,
        [id],
      );
      if (found.rows.length === 0)
        throw new CairnError('CAIRN_NOT_FOUND', `experiment "${id}" not found`, { experiment_id: id });
      const next: Experiment = { ...toExperiment(found.rows[0]), ...definedFields(patch), id };
      await c.query(
        `UPDATE ${s}.experiments SET kind = $2, status = $3, variants = $4::jsonb, unit = $5, guard = $6::jsonb,
           created_at = $7, created_by = $8, stopped_at = $9, stop_reason = $10
         WHERE id = $1`,
        experimentValues(next),
      );
      return next;
    });
  }
}

export class PgServedLog implements ServedLogStore {
  private readonly totalsSql: string;

  constructor(private readonly db: Db) {
    this.totalsSql = TOTALS_SQL(`${db.s}.served`, `${db.s}.feedback`, '$1', 'DOUBLE PRECISION');
  }

  async record(records: ServedRecord[]): Promise<void> {
    if (records.length === 0) return;
    const doc = JSON.stringify(
      records.map((r, ord) => ({
        ord,
        request_id: r.requestId,
        mode: r.mode,
        user_id: r.userId,
        endpoint: r.endpoint,
        experiment_id: r.experimentId,
        variant: r.variant,
        model_version: r.modelVersion,
        source: r.source,
        items: r.items,
        n_items: r.items.length,
        at: r.at,
      })),
    );
    // ORDER BY ord (the batch position): list order (newest first, ties by insertion) follows the batch.
    await this.db.query(
      `INSERT INTO ${this.db.s}.served (${SERVED_COLUMNS}, n_items)
       SELECT x.request_id, x.mode, x.user_id, x.endpoint, x.experiment_id, x.variant, x.model_version,
         x.source, x.items, x.at, x.n_items
       FROM jsonb_to_recordset($1::jsonb) AS x(request_id text, mode text, user_id text,
         endpoint text, experiment_id text, variant text, model_version text, source text, items jsonb,
         n_items int, at bigint, ord bigint)
       ORDER BY x.ord
       ON CONFLICT (request_id, mode) DO NOTHING`,
      [doc],
    );
  }

  async get(requestId: string, mode?: ServedRecord['mode']): Promise<ServedRecord | null> {
    const { s } = this.db;
    const rows =
      mode === undefined
        ? await this.db.query<ServedRow>(
            // `served` before `shadow`: without a mode the served answer is the one asked for.
            `SELECT ${SERVED_COLUMNS} FROM ${s}.served WHERE request_id = $1 ORDER BY CASE mode WHEN 'served' THEN 0 ELSE 1 END LIMIT 1`,
            [requestId],
          )
        : await this.db.query<ServedRow>(
            `SELECT ${SERVED_COLUMNS} FROM ${s}.served WHERE request_id = $1 AND mode = $2`,
            [requestId, mode],
          );
    return rows.length > 0 ? toServed(rows[0]) : null;
  }

  async addFeedback(records: FeedbackRecord[]): Promise<('inserted' | 'duplicate')[]> {
    if (records.length === 0) return [];
    // Only first occurrences go to the database (one statement may not insert a key twice); later
    // repeats in the batch are duplicates by definition.
    const key = (f: FeedbackRecord) => `${f.requestId}\u0000${f.itemId}\u0000${f.type}`;
    const first = new Map<string, number>();
    const unique: FeedbackRecord[] = [];
    records.forEach((f, i) => {
      if (first.has(key(f))) return;
      first.set(key(f), i);
      unique.push(f);
    });
    const doc = JSON.stringify(
      unique.map((f) => ({
        request_id: f.requestId,
        item_id: f.itemId,
        type: f.type,
        value: f.value ?? null,
        at: f.at,
      })),
    );
    const inserted = await this.db.query<{ request_id: string; item_id: string; type: string }>(
      `INSERT INTO ${this.db.s}.feedback (request_id, item_id, type, value, at)
       SELECT x.request_id, x.item_id, x.type, x.value, x.at
       FROM jsonb_to_recordset($1::jsonb) AS x(request_id text, item_id text, type text, value float8, at bigint)
       ON CONFLICT (request_id, item_id, type) DO NOTHING
       RETURNING request_id, item_id, type`,
      [doc],
    );
    const stored = new Set(
      inserted.map((r) =>
        key({ requestId: r.request_id, itemId: r.item_id, type: r.type } as FeedbackRecord),
      ),
    );
    return records.map((f, i) => (first.get(key(f)) === i && stored.has(key(f)) ? 'inserted' : 'duplicate'));
  }

  async variantTotals(experimentId: string): Promise<VariantTotals[]> {
    const rows = await this.db.query<TotalsRow & Record<string, unknown>>(this.totalsSql, [experimentId]);
    return rows.map(toTotals);
  }

  async list(options: {
    experimentId?: string;
    mode?: ServedRecord['mode'];
    limit: number;
  }): Promise<ServedRecord[]> {
    if (options.limit <= 0) return [];
    const where: string[] = [];
    const params: unknown[] = [];
    if (options.experimentId !== undefined) {
      params.push(options.experimentId);
      where.push(`experiment_id = $${params.length}`);
    }
    if (options.mode !== undefined) {
      params.push(options.mode);
      where.push(`mode = $${params.length}`);
    }
    params.push(Math.floor(options.limit));
    const rows = await this.db.query<ServedRow>(
      `SELECT ${SERVED_COLUMNS} FROM ${this.db.s}.served
       ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY at DESC, ord DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(toServed);
  }

  async withOutcomes(options: {
    endpoint: string;
    limit: number;
    before?: Pick<ServedRecord, 'at' | 'requestId'>;
  }): Promise<ServedWithFeedback[]> {
    if (options.limit <= 0) return [];
    const { s } = this.db;
    const { before } = options;
    const p = { endpoint: '$1', limit: '$2', ...(before ? { before: { at: '$3', requestId: '$4' } } : {}) };
    const params = [
      options.endpoint,
      Math.floor(options.limit),
      ...(before ? [before.at, before.requestId] : []),
    ];
    // One snapshot: the feedback belongs to exactly the answers read.
    return this.db.tx(async (c) => {
      await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      const answers = await c.query<ServedRow>(
        OUTCOME_ANSWERS_SQL(`${s}.served`, `${s}.feedback`, SERVED_COLUMNS, p),
        params,
      );
      const feedback = await c.query<FeedbackRow>(
        OUTCOME_FEEDBACK_SQL(`${s}.served`, `${s}.feedback`, p),
        params,
      );
      return groupOutcomes(answers.rows.map(toServed), feedback.rows);
    });
  }

  /** Feedback first, then the served records, in one transaction. */
  async deleteForUser(userId: string): Promise<number> {
    const { s } = this.db;
    return this.db.tx(async (c) => {
      await c.query(
        `DELETE FROM ${s}.feedback WHERE request_id IN (SELECT request_id FROM ${s}.served WHERE user_id = $1)`,
        [userId],
      );
      const res = await c.query(`DELETE FROM ${s}.served WHERE user_id = $1`, [userId]);
      return res.rowCount ?? 0;
    });
  }
}
