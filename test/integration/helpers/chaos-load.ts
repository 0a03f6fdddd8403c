/**
 * A steady open-loop load on one API replica, for chaos tests: recommendation GETs and event POSTs fired
 * at fixed rates whatever the answers take (a slow server gets more requests in flight, as with real
 * clients), every answer recorded with the phase it was sent in and judged:
 *
 * - a recommendation is valid when it is a 200 whose body matches the API schema, has items, and names
 *   its fallback (`fallback_reason`) whenever it is not personalized;
 * - an event POST is acknowledged when it is a 200 with every event `accepted` or `duplicate`; it is a
 *   clear refusal when it is a 5xx whose body carries a `CAIRN_*` error code; anything else (a timeout,
 *   a 4xx, a 5xx without a code) is a problem.
 */
import type { EventsBatchWire, RecommendationWire } from '../../../src/api/schemas.ts';
import { http } from './processes.ts';

export type Phase = 'before' | 'outage' | 'after';

export interface WireEvent {
  event_id: string;
  user_id: string;
  item_id: string;
  type: string;
  timestamp: number;
}

export interface GetRecord {
  phase: Phase;
  /** When it was sent (epoch ms) and how long its answer took. */
  at: number;
  ms: number;
  status: number;
  /** `source` or `source/fallback_reason`, with ` (degraded)` when so; null when invalid. */
  label: string | null;
  degraded: boolean;
  /** Why the answer is not valid; null when it is. */
  problem: string | null;
}

export interface PostRecord {
  phase: Phase;
  at: number;
  ms: number;
  status: number;
  events: WireEvent[];
  acked: boolean;
  /** Events of an acknowledged POST the log already had (`duplicate`): stored by an earlier attempt. */
  duplicates: number;
  /** The CAIRN_* code of a clear refusal. */
  code: string | null;
  problem: string | null;
}

export interface LoadOptions {
  apiUrl: string;
  /** Prefix of every event id (unique per run). */
  run: string;
  /** Users known to the champion; one GET in three asks for a user nobody has seen. */
  users: number;
  items: number;
  getsPerSecond: number;
  postsPerSecond: number;
  eventsPerPost: number;
  /** Requests in flight beyond which the load stops sending (and counts what it skipped). */
  maxInFlight?: number;
  timeoutMs?: number;
}

const TYPES = ['view', 'click', 'add_to_cart', 'purchase'];
const TICK_MS = 10;

const isString = (v: unknown): v is string => typeof v === 'string';
const isNullableString = (v: unknown) => v === null || isString(v);

/** Whether `body` has the shape of RecommendationResponse (src/api/schemas.ts), item by item. */
function isRecommendation(body: unknown): body is RecommendationWire {
  const r = body as Partial<RecommendationWire> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    isString(r.request_id) &&
    isNullableString(r.user_id) &&
    isNullableString(r.model_version) &&
    (r.source === 'personalized' || r.source === 'fallback') &&
    isNullableString(r.fallback_reason) &&
    typeof r.degraded === 'boolean' &&
    (r.experiment === null || (typeof r.experiment === 'object' && isString(r.experiment?.id))) &&
    Array.isArray(r.items) &&
    r.items.every((it) => isString(it.item_id) && Number.isFinite(it.score) && isString(it.reason))
  );
}

/** Why a recommendation answer is not a valid one, or null. */
export function recommendationProblem(status: number, body: unknown): string | null {
  const text = () => JSON.stringify(body).slice(0, 300);
  if (status !== 200) return `${status} ${text()}`;
  if (!isRecommendation(body)) return `200 but not a recommendation: ${text()}`;
  if (body.items.length === 0) return `200 without items: ${text()}`;
  if (body.source === 'fallback' && !body.fallback_reason) return `unlabelled fallback: ${text()}`;
  return null;
}

/** `acked` (with how many were duplicates), a CAIRN_* code of a clear refusal, or a problem. */
export function judgePost(
  status: number,
  body: unknown,
  sent: number,
): Pick<PostRecord, 'acked' | 'duplicates' | 'code' | 'problem'> {
  const refused = { acked: false, duplicates: 0, code: null };
  if (status === 200) {
    const results = (body as EventsBatchWire).results;
    if (results?.length === sent && results.every((r) => r.status !== 'rejected')) {
      const duplicates = results.filter((r) => r.status === 'duplicate').length;
      return { acked: true, duplicates, code: null, problem: null };
    }
    return { ...refused, problem: `200 not acknowledging: ${JSON.stringify(body).slice(0, 300)}` };
  }
  const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
  if (status >= 500 && typeof code === 'string' && code.startsWith('CAIRN_'))
    return { ...refused, code, problem: null };
  return { ...refused, problem: `${status} ${JSON.stringify(body).slice(0, 300)}` };
}

export class ChaosLoad {
  phase: Phase = 'before';
  readonly gets: GetRecord[] = [];
  readonly posts: PostRecord[] = [];
  /** Requests not sent because too many were in flight. */
  skipped = 0;
  private inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private started = 0;
  private sentGets = 0;
  private sentPosts = 0;
  private batch = 0;

  constructor(private readonly options: LoadOptions) {}

  /** Starts sending; `phase` may be changed while it runs. */
  start(): void {
    if (this.timer) throw new Error('load already running');
    this.started = Date.now();
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  /** Stops sending and waits for every answer. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** A fresh batch of events (ids unique to the run), as the load sends them. */
  makeEvents(): WireEvent[] {
    const { run, users, items, eventsPerPost } = this.options;
    const n = this.batch++;
    const now = Date.now();
    return Array.from({ length: eventsPerPost }, (_, i) => ({
      event_id: `${run}-${n}-${i}`,
      user_id: `u${1 + ((n * 7 + i) % users)}`,
      item_id: `i${1 + ((n * 13 + i * 7) % items)}`,
      type: TYPES[(n + i) % TYPES.length],
      timestamp: now - 1000,
    }));
  }

  /** Posts `events` once and records the answer. */
  async post(events: WireEvent[], phase: Phase = this.phase): Promise<PostRecord> {
    const at = Date.now();
    let status = 0;
    let body: unknown = null;
    try {
      ({ status, body } = await http('POST', `${this.options.apiUrl}/v1/events`, { events }, this.timeout));
    } catch (err) {
      body = { transport: (err as Error).message };
    }
    const record: PostRecord = {
      phase,
      at,
      ms: Date.now() - at,
      status,
      events,
      ...judgePost(status, body, events.length),
    };
    this.posts.push(record);
    return record;
  }

  private get timeout(): number {
    return this.options.timeoutMs ?? 15_000;
  }

  private tick(): void {
    const elapsed = (Date.now() - this.started) / 1000;
    while (this.sentGets < elapsed * this.options.getsPerSecond) {
      this.sentGets++;
      this.send(() => this.get(this.sentGets));
    }
    while (this.sentPosts < elapsed * this.options.postsPerSecond) {
      this.sentPosts++;
      this.send(async () => void (await this.post(this.makeEvents())));
    }
  }

  private send(request: () => Promise<void>): void {
    if (this.inFlight.size >= (this.options.maxInFlight ?? 400)) {
      this.skipped++;
      return;
    }
    const p = request().finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async get(n: number): Promise<void> {
    const phase = this.phase;
    // Known users (champion, history in Redis) and users never seen (the fallback chain).
    const user = n % 3 === 2 ? `new-${this.options.run}-${n}` : `u${1 + (n % this.options.users)}`;
    const at = Date.now();
    let status = 0;
    let body: unknown = null;
    try {
      ({ status, body } = await http(
        'GET',
        `${this.options.apiUrl}/v1/users/${user}/recommendations?k=10`,
        undefined,
        this.timeout,
      ));
    } catch (err) {
      body = { transport: (err as Error).message };
    }
    const problem = recommendationProblem(status, body);
    const r = body as RecommendationWire;
    const label =
      problem === null
        ? `${r.source}${r.fallback_reason ? `/${r.fallback_reason}` : ''}${r.degraded ? ' (degraded)' : ''}`
        : null;
    this.gets.push({
      phase,
      at,
      ms: Date.now() - at,
      status,
      label,
      degraded: r?.degraded === true,
      problem,
    });
  }
}
