/**
 * The per-variant totals query of `ServedLogStore.variantTotals`, shared by the SQLite and PostgreSQL
 * adapters so both count exactly the same way (pure: SQL text and a row mapping, no I/O).
 */
import type { VariantTotals } from '../domain/types.ts';

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
