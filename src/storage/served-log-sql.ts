/**
 * The per-variant totals query of `ServedLogStore.variantTotals` and the answers-with-outcomes queries of
 * `ServedLogStore.withOutcomes`, shared by the SQLite and PostgreSQL adapters so both count and select
 * exactly the same way (pure: SQL text and row mappings, no I/O).
 */
import type { FeedbackRecord, FeedbackType, ServedRecord, VariantTotals } from '../domain/types.ts';
import type { ServedWithFeedback } from './ports.ts';

/** One row of TOTALS_SQL (drivers may hand numbers back as strings: toTotals converts). */
export interface TotalsRow {
  variant: string;
  users: number | string;
  impressions: number | string;
  clicks: number | string;
  conversions: number | string;
  clicking_users: number | string;
  converting_users: number | string;
  revenue: number | string | null;
  revenue_squares: number | string | null;
}

/**
 * Per-variant totals in one statement over an experiment's served answers (mode `served`):
 * 1. per request: its impression feedback count when it has any, else its number of served items;
 *    clicks, conversions and conversion value from the feedback joined by request id (feedback whose
 *    request is unknown never joins, so it does not count);
 * 2. per (variant, user): the sums, so clicking/converting users and revenue per user can be formed;
 * 3. per variant: distinct users, sums, and the sum and sum of squares of per-user revenue.
 *
 * `real` is the SQL cast target for sums (PostgreSQL's SUM of integers is NUMERIC, which its driver
 * returns as a string; casting keeps the result a plain number on both databases).
 */
export function TOTALS_SQL(served: string, feedback: string, param: string, real = ''): string {
  const cast = (expr: string) => (real === '' ? expr : `CAST(${expr} AS ${real})`);
  return `
  WITH s AS (
    SELECT request_id, user_id, variant, n_items FROM ${served}
    WHERE experiment_id = ${param} AND mode = 'served' AND variant IS NOT NULL
  ),
  f AS (
    SELECT s.request_id,
      SUM(CASE WHEN fb.type = 'impression' THEN 1 ELSE 0 END) AS imps,
      SUM(CASE WHEN fb.type = 'click' THEN 1 ELSE 0 END) AS clicks,
      SUM(CASE WHEN fb.type = 'conversion' THEN 1 ELSE 0 END) AS convs,
      SUM(CASE WHEN fb.type = 'conversion' THEN COALESCE(fb.value, 0) ELSE 0 END) AS revenue
    FROM s JOIN ${feedback} fb ON fb.request_id = s.request_id
    GROUP BY s.request_id
  ),
  per_user AS (
    SELECT s.variant, s.user_id,
      SUM(CASE WHEN COALESCE(f.imps, 0) > 0 THEN f.imps ELSE s.n_items END) AS imps,
      SUM(COALESCE(f.clicks, 0)) AS clicks,
      SUM(COALESCE(f.convs, 0)) AS convs,
      SUM(COALESCE(f.revenue, 0)) AS revenue
    FROM s LEFT JOIN f ON f.request_id = s.request_id
    GROUP BY s.variant, s.user_id
  )
  SELECT variant,
    ${cast('COUNT(*)')} AS users,
    ${cast('SUM(imps)')} AS impressions,
    ${cast('SUM(clicks)')} AS clicks,
    ${cast('SUM(convs)')} AS conversions,
    ${cast('SUM(CASE WHEN clicks > 0 THEN 1 ELSE 0 END)')} AS clicking_users,
    ${cast('SUM(CASE WHEN convs > 0 THEN 1 ELSE 0 END)')} AS converting_users,
    ${cast('SUM(revenue)')} AS revenue,
    ${cast('SUM(revenue * revenue)')} AS revenue_squares
  FROM per_user GROUP BY variant ORDER BY variant`;
}

export function toTotals(r: TotalsRow): VariantTotals {
  return {
    variant: r.variant,
    users: Number(r.users),
    impressions: Number(r.impressions),
    clicks: Number(r.clicks),
    conversions: Number(r.conversions),
    clickingUsers: Number(r.clicking_users),
    convertingUsers: Number(r.converting_users),
    revenue: Number(r.revenue ?? 0),
    revenueSquares: Number(r.revenue_squares ?? 0),
  };
}

/**
 * `ServedLogStore.withOutcomes` in two statements sharing one subquery: the newest served answers of an
 * endpoint with a click or conversion (`OUTCOME_ANSWERS_SQL`), and the feedback of exactly those
 * (`OUTCOME_FEEDBACK_SQL`); `groupOutcomes` joins them. `p` names the placeholders of the endpoint, the
 * limit and, for a page after the first, the (at, request id) of the last answer of the previous page.
 */
export interface OutcomeParams {
  endpoint: string;
  limit: string;
  before?: { at: string; requestId: string };
}

function outcomeRequests(served: string, feedback: string, p: OutcomeParams): string {
  // Written so the index on `at` serves it: walked newest first from the page's bound, each answer
  // checked by the feedback primary key, stopping at the limit (the cost grows with the answers walked,
  // not with all the feedback ever stored).
  const after = p.before
    ? `AND at <= ${p.before.at} AND (at < ${p.before.at} OR request_id < ${p.before.requestId})`
    : '';
  return `SELECT request_id FROM ${served} s
    WHERE mode = 'served' AND endpoint = ${p.endpoint} ${after}
      AND EXISTS (SELECT 1 FROM ${feedback} f
        WHERE f.request_id = s.request_id AND f.type IN ('click', 'conversion'))
    ORDER BY at DESC, request_id DESC LIMIT ${p.limit}`;
}

export function OUTCOME_ANSWERS_SQL(
  served: string,
  feedback: string,
  columns: string,
  p: OutcomeParams,
): string {
  return `SELECT ${columns} FROM ${served}
    WHERE mode = 'served' AND request_id IN (${outcomeRequests(served, feedback, p)})
    ORDER BY at DESC, request_id DESC`;
}

export function OUTCOME_FEEDBACK_SQL(served: string, feedback: string, p: OutcomeParams): string {
  return `SELECT request_id, item_id, type, value, at FROM ${feedback}
    WHERE request_id IN (${outcomeRequests(served, feedback, p)})
    ORDER BY request_id, item_id, type`;
}

/** One row of OUTCOME_FEEDBACK_SQL. */
export interface FeedbackRow {
  request_id: string;
  item_id: string;
  type: string;
  value: number | string | null;
  at: number | string;
}

/** The answers (already newest first) each with its feedback rows. */
export function groupOutcomes(answers: ServedRecord[], rows: readonly FeedbackRow[]): ServedWithFeedback[] {
  const byRequest = new Map<string, FeedbackRecord[]>();
  for (const r of rows) {
    let list = byRequest.get(r.request_id);
    if (!list) byRequest.set(r.request_id, (list = []));
    list.push({
      requestId: r.request_id,
      itemId: r.item_id,
      type: r.type as FeedbackType,
      value: r.value === null ? null : Number(r.value),
      at: Number(r.at),
    });
  }
  return answers.map((served) => ({ served, feedback: byRequest.get(served.requestId) ?? [] }));
}
