/**
 * SQLite adapters of the experiment store and the served-answer log with its feedback (migration v5).
 * Experiment variants and guards, and served items, are JSON text columns: they are read and written
 * whole, never queried inside.
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
import type { ServedLogThread } from './served-log-thread.ts';

/**
 * Runs a driver call and maps its errors to Cairn codes. Passed in by SqliteStore (which owns the
 * mapping) rather than imported, so this module and store.ts do not import each other.
 */
export type Guard = <T>(fn: () => T) => T;

/** Prepares a statement on first use (tables exist only after `migrate()`). */
function lazy<T>(make: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= make());
}

interface ExperimentRow {
  id: string;
  kind: string;
  status: string;
  variants: string;
  unit: string;
  guard: string | null;
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
  items: string;
  at: number;
}

const EXPERIMENT_COLUMNS =
  'id, kind, status, variants, unit, guard, created_at, created_by, stopped_at, stop_reason';
const SERVED_COLUMNS =
  'request_id, mode, user_id, endpoint, experiment_id, variant, model_version, source, items, at';

function toExperiment(r: ExperimentRow): Experiment {
  return {
    id: r.id,
    kind: r.kind as Experiment['kind'],
    status: r.status as Experiment['status'],
    variants: JSON.parse(r.variants) as Experiment['variants'],
    unit: r.unit as Experiment['unit'],
    guard: r.guard === null ? null : (JSON.parse(r.guard) as Experiment['guard']),
    createdAt: r.created_at,
    createdBy: r.created_by,
    stoppedAt: r.stopped_at,
    stopReason: r.stop_reason,
  };
}

function experimentParams(e: Experiment): Record<string, unknown> {
  return {
    id: e.id,
    kind: e.kind,
    status: e.status,
    variants: JSON.stringify(e.variants),
    unit: e.unit,
    guard: e.guard === null ? null : JSON.stringify(e.guard),
    createdAt: e.createdAt,
    createdBy: e.createdBy,
    stoppedAt: e.stoppedAt,
    stopReason: e.stopReason,
  };
}

function toServed(r: ServedRow): ServedRecord {
  return {
    requestId: r.request_id,
    userId: r.user_id,
    mode: r.mode as ServedRecord['mode'],
    endpoint: r.endpoint,
    experimentId: r.experiment_id,
    variant: r.variant,
    modelVersion: r.model_version,
    source: r.source as ServedRecord['source'],
    items: JSON.parse(r.items) as ServedItem[],
    at: r.at,
  };
}

export class SqliteExperiments implements ExperimentStore {
  private readonly guarded: Guard;
  private readonly insertOne;
  private readonly updateOne;
  private readonly byId;
  private readonly all;
  private readonly byStatus;
  private readonly updateTx;

  constructor(db: Db, guard: Guard) {
    this.guarded = guard;
    this.insertOne = lazy(() =>
      db.prepare(
        `INSERT INTO experiments (${EXPERIMENT_COLUMNS}) VALUES (@id, @kind, @status, @variants, @unit, @guard,
           @createdAt, @createdBy, @stoppedAt, @stopReason)`,
      ),
    );
    this.updateOne = lazy(() =>
      db.prepare(
        `UPDATE experiments SET kind = @kind, status = @status, variants = @variants, unit = @unit,
           guard = @guard, created_at = @createdAt, created_by = @createdBy, stopped_at = @stoppedAt,
           stop_reason = @stopReason
         WHERE id = @id`,
      ),
    );
    this.byId = lazy(() =>
      db.prepare<[string], ExperimentRow>(`SELECT ${EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?`),
    );
    this.all = lazy(() =>
      db.prepare<[], ExperimentRow>(
        `SELECT ${EXPERIMENT_COLUMNS} FROM experiments ORDER BY created_at DESC, rowid DESC`,
      ),
    );
    this.byStatus = lazy(() =>
      db.prepare<[string], ExperimentRow>(
        `SELECT ${EXPERIMENT_COLUMNS} FROM experiments WHERE status = ? ORDER BY created_at DESC, rowid DESC`,
      ),
    );
    this.updateTx = db.transaction((id: string, patch: Partial<Omit<Experiment, 'id'>>): Experiment => {
      const row = this.byId().get(id);
      if (!row)
        throw new CairnError('CAIRN_NOT_FOUND', `experiment "${id}" not found`, { experiment_id: id });
      const next: Experiment = { ...toExperiment(row), ...definedFields(patch), id };
      this.updateOne().run(experimentParams(next));
      return next;
    });
  }

  async create(experiment: Experiment): Promise<void> {
    this.guarded(() => this.insertOne().run(experimentParams(experiment)));
    return Promise.resolve();
  }

  async get(id: string): Promise<Experiment | null> {
    const row = this.guarded(() => this.byId().get(id));
    return Promise.resolve(row ? toExperiment(row) : null);
  }

  async list(options: { status?: Experiment['status'] } = {}): Promise<Experiment[]> {
    const rows = this.guarded(() =>
      options.status === undefined ? this.all().all() : this.byStatus().all(options.status),
    );
    return Promise.resolve(rows.map(toExperiment));
  }

  async update(id: string, patch: Partial<Omit<Experiment, 'id'>>): Promise<Experiment> {
    return Promise.resolve(this.guarded(() => this.updateTx.immediate(id, patch)));
  }
}

/**
 * The transaction that inserts served records (a record already stored under its request id and mode
 * is kept). On the service's connection, or on the served-log writer thread's own (served-log-thread.ts).
 */
export function servedInserter(db: Db): (records: ServedRecord[]) => void {
  const insertServed = lazy(() =>
    db.prepare(
      `INSERT INTO served (${SERVED_COLUMNS}, n_items) VALUES (@requestId, @mode, @userId, @endpoint,
         @experimentId, @variant, @modelVersion, @source, @items, @at, @nItems)
       ON CONFLICT (request_id, mode) DO NOTHING`,
    ),
  );
  const tx = db.transaction((records: ServedRecord[]) => {
    const insert = insertServed();
    for (const r of records) {
      insert.run({
        requestId: r.requestId,
        mode: r.mode,
        userId: r.userId,
        endpoint: r.endpoint,
        experimentId: r.experimentId,
        variant: r.variant,
        modelVersion: r.modelVersion,
        source: r.source,
        items: JSON.stringify(r.items),
        at: r.at,
        nItems: r.items.length,
      });
    }
  });
  return (records) => tx.immediate(records);
}

export class SqliteServedLog implements ServedLogStore {
  private readonly recordTx;
  private readonly feedbackTx;
  private readonly byRequest;
  private readonly byRequestMode;
  private readonly totals;
  private readonly outcomes;
  private readonly eraseTx;
  private readonly db: Db;
  private readonly guarded: Guard;

  /**
   * `thread`: where served records are written (a file database: its own connection on a worker
   * thread, so a commit never holds the event loop); null writes them on `db`.
   */
  constructor(
    db: Db,
    guard: Guard,
    private readonly thread: ServedLogThread | null = null,
  ) {
    this.db = db;
    this.guarded = guard;
    this.recordTx = servedInserter(db);
    const insertFeedback = lazy(() =>
      db.prepare<[string, string, string, number | null, number]>(
        `INSERT INTO feedback (request_id, item_id, type, value, at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (request_id, item_id, type) DO NOTHING`,
      ),
    );
    this.feedbackTx = db.transaction((records: FeedbackRecord[]): ('inserted' | 'duplicate')[] => {
      const insert = insertFeedback();
      return records.map((f) =>
        insert.run(f.requestId, f.itemId, f.type, f.value ?? null, f.at).changes === 1
          ? 'inserted'
          : 'duplicate',
      );
    });
    this.byRequest = lazy(() =>
      db.prepare<[string], ServedRow>(
        // `served` before `shadow`: without a mode the served answer is the one asked for.
        `SELECT ${SERVED_COLUMNS} FROM served WHERE request_id = ? ORDER BY CASE mode WHEN 'served' THEN 0 ELSE 1 END LIMIT 1`,
      ),
    );
    this.byRequestMode = lazy(() =>
      db.prepare<[string, string], ServedRow>(
        `SELECT ${SERVED_COLUMNS} FROM served WHERE request_id = ? AND mode = ?`,
      ),
    );
    this.totals = lazy(() => db.prepare<[string], TotalsRow>(TOTALS_SQL('served', 'feedback', '?')));
    // One read transaction: the feedback belongs to exactly the answers read. Prepared per shape (first
    // page, later page).
    const statements = (paged: boolean) => {
      const p = { endpoint: '?', limit: '?', ...(paged ? { before: { at: '?', requestId: '?' } } : {}) };
      return {
        answers: db.prepare<unknown[], ServedRow>(
          OUTCOME_ANSWERS_SQL('served', 'feedback', SERVED_COLUMNS, p),
        ),
        feedback: db.prepare<unknown[], FeedbackRow>(OUTCOME_FEEDBACK_SQL('served', 'feedback', p)),
      };
    };
    const first = lazy(() => statements(false));
    const next = lazy(() => statements(true));
    this.outcomes = db.transaction((params: unknown[]) => {
      const st = params.length > 2 ? next() : first();
      return groupOutcomes(st.answers.all(...params).map(toServed), st.feedback.all(...params));
    });
    const deleteFeedback = lazy(() =>
      db.prepare<[string]>(
        'DELETE FROM feedback WHERE request_id IN (SELECT request_id FROM served WHERE user_id = ?)',
      ),
    );
    const deleteServed = lazy(() => db.prepare<[string]>('DELETE FROM served WHERE user_id = ?'));
    this.eraseTx = db.transaction((userId: string): number => {
      deleteFeedback().run(userId);
      return deleteServed().run(userId).changes;
    });
  }

  async record(records: ServedRecord[]): Promise<void> {
    if (records.length === 0) return;
    if (this.thread) await this.thread.write(records);
    else this.guarded(() => this.recordTx(records));
  }

  async get(requestId: string, mode?: ServedRecord['mode']): Promise<ServedRecord | null> {
    const row = this.guarded(() =>
      mode === undefined ? this.byRequest().get(requestId) : this.byRequestMode().get(requestId, mode),
    );
    return Promise.resolve(row ? toServed(row) : null);
  }

  async addFeedback(records: FeedbackRecord[]): Promise<('inserted' | 'duplicate')[]> {
    if (records.length === 0) return Promise.resolve([]);
    return Promise.resolve(this.guarded(() => this.feedbackTx.immediate(records)));
  }

  async variantTotals(experimentId: string): Promise<VariantTotals[]> {
    return Promise.resolve(this.guarded(() => this.totals().all(experimentId).map(toTotals)));
  }

  async list(options: {
    experimentId?: string;
    mode?: ServedRecord['mode'];
    limit: number;
  }): Promise<ServedRecord[]> {
    if (options.limit <= 0) return Promise.resolve([]);
    const where: string[] = [];
    const params: unknown[] = [];
    if (options.experimentId !== undefined) {
      where.push('experiment_id = ?');
      params.push(options.experimentId);
    }
    if (options.mode !== undefined) {
      where.push('mode = ?');
      params.push(options.mode);
    }
    params.push(Math.floor(options.limit));
    const sql = `SELECT ${SERVED_COLUMNS} FROM served ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY at DESC, rowid DESC LIMIT ?`;
    const rows = this.guarded(() => this.db.prepare<unknown[], ServedRow>(sql).all(...params));
    return Promise.resolve(rows.map(toServed));
  }

  async withOutcomes(options: {
    endpoint: string;
    limit: number;
    before?: Pick<ServedRecord, 'at' | 'requestId'>;
  }): Promise<ServedWithFeedback[]> {
    if (options.limit <= 0) return Promise.resolve([]);
    const { before } = options;
    // Placeholders in statement order: endpoint, then the page's bound (at twice), then the limit.
    const params = before
      ? [options.endpoint, before.at, before.at, before.requestId, Math.floor(options.limit)]
      : [options.endpoint, Math.floor(options.limit)];
    return Promise.resolve(this.guarded(() => this.outcomes.deferred(params)));
  }

  async deleteForUser(userId: string): Promise<number> {
    return Promise.resolve(this.guarded(() => this.eraseTx.immediate(userId)));
  }
}
