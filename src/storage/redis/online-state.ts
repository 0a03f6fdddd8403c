/**
 * Online state in Redis, shared by every API replica of a production deployment.
 * Keys (P = `${keyPrefix}online:`):
 *
 * - `P:wm` hash `events`, `changes` — the watermarks, written in the same script as the batch they cover;
 *   `fgen` counts the erases that rewrote feature states (the second half of applyEvents' compare-and-set).
 * - `P:meta` hash `t0` — the popularity reference time T0 (epoch ms).
 * - `P:pop` sorted set — per item −s_i, with s_i = Σ w·2^((t−T0)/H) (features/popularity.ts). Negated so that
 *   ZRANGE (ascending score, ties by member bytes) lists the best first with ties by item id, exactly like
 *   the memory adapter. When an exponent would pass MAX_EXPONENT, T0 moves to that event's time and every
 *   member is rescaled at once with ZUNIONSTORE … WEIGHTS.
 * - `P:history:<userId>` sorted set — score = timestamp, member = 16-digit zero-padded seq + event JSON, so
 *   equal timestamps sort by seq; trimmed to historyLimit and given a TTL on every write.
 * - `P:contrib:<userId>` hash item id → `<weight> <at>`: what the user holds of the item's popularity (the
 *   per-user cap, features/popularity.ts `capContribution`); only with `maxUserItemWeight`, same TTL as the
 *   history. After the user's history expires their holdings start again from nothing; by then the decayed
 *   holdings were at most maxUserItemWeight · 2^(−TTL/H), so an erase afterwards may subtract that much less
 *   (at most 0.002 with the defaults) than was added.
 * - `P:optout` set of opted-out user ids.
 * - `P:features` hash item id → item feature state JSON (features/item-state.ts `ItemFeatureState`). Folded in
 *   JS with `foldItemEvent` (the one fold, shared with the memory adapter and offline replays): applyEvents
 *   reads the watermark, the touched items' states and the acting users' metadata in one script, folds the
 *   events past the watermark, and writes the states in the script that applies the batch, which first
 *   checks the watermark is still the one read (compare-and-set) and otherwise changes nothing, so the
 *   adapter reads and folds again. A replayed or concurrent batch therefore never folds an event twice.
 *   An erase takes the user's counted events back out the same way (`unfoldItemEvent`, with the segments
 *   in `P:users` before the erase drops them): applyChanges reads the states, both watermarks and `fgen`,
 *   unfolds in JS, and its script writes the states only if none of the three moved, bumping `fgen`; so an
 *   applyEvents folded from the states before the erase is folded again too, never written over it.
 * - `P:users` hash user id → `{segments, attributes}` JSON from `user` records; dropped on erase. The
 *   segments are those the fold attributes an event to.
 * - `P:items` hash id → item JSON, and `P:item-ids` sorted set (all scores 0) for lexicographic paging.
 * - `P:cache:<userId>` hash key → `<expires-at ms>:<value>` with PEXPIRE; the per-entry expiry is checked
 *   against the Redis clock, because Redis 7.0 has no per-field TTL.
 * - `P:cver:<userId>` counter incremented with every drop of the user's cache (an event or user record of
 *   theirs; expires with the history);
 *   with the `cepoch` field of `P:wm` (incremented by every erase, which deletes the counter) it makes the
 *   user's cache version `<cepoch>.<cver>`, which a versioned cacheSet compares in its script.
 *
 * Writes are Lua scripts: a batch and its watermark are applied atomically in one round trip, and records at
 * or below the stored watermark are skipped inside the script, so a redelivered batch changes nothing.
 * Single writer: each log is applied by one durable consumer (one process at a time). Because the watermark
 * check runs inside the script, a second writer briefly overlapping during a hand-over cannot apply a record
 * twice either. Reads that need T0 together with scores read both in one script, so a concurrent rebase
 * can never mix two references.
 *
 * Standalone Redis (with replicas or Sentinel): a script touches the keys of many users, which Redis Cluster
 * would only accept if they all hashed to one slot.
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Item, StoredEvent } from '../../domain/types.ts';
import { CairnError } from '../../errors/errors.ts';
import {
  FEATURE_DEFAULTS,
  featureConfigIssues,
  type FeatureConfig,
  type ItemFeatureState,
  type UserMeta,
} from '../../features/definitions.ts';
import { featureConfigOf, foldItemEvent, unfoldItemEvent } from '../../features/item-state.ts';
import {
  ContributionRules,
  MAX_EXPONENT,
  RESIDUE_TOLERANCE,
  weightLimitIssues,
} from '../../features/popularity.ts';
import type {
  EntityChange,
  LogRecord,
  OnlineState,
  OnlineStateOptions,
  OnlineWatermarks,
  PopularEntry,
} from '../ports.ts';
import { NETWORK_CODES } from '../shared.ts';

export interface RedisOnlineStateOptions extends OnlineStateOptions {
  /** `redis://host:port/db`: the adapter creates its own client and quits it on close(). */
  url?: string;
  /**
   * A client to share (e.g. with the job queue); close() leaves it open. It must not use ioredis's own
   * `keyPrefix` option (the adapter prefixes keys itself, including SCAN patterns).
   */
  client?: Redis;
  /** Prefix of every key (config `redis.keyPrefix`); this adapter's keys start with `${keyPrefix}online:`. */
  keyPrefix: string;
  /** A user's history expires this long after their last event (default 90 days). */
  historyTtlMs?: number;
  /** Own client only: a command unanswered this long fails with CAIRN_UNAVAILABLE (default 5 s). */
  commandTimeoutMs?: number;
}

const DEFAULT_HISTORY_TTL_MS = 90 * 86_400_000;

/** Seqs are < 2^53 < 10^16: 16 digits make the member order of one timestamp the seq order. */
const SEQ_DIGITS = 16;

/** Attempts of applyEvents' read-fold-write cycle before giving up (each lost race is another writer's progress). */
const MAX_APPLY_ATTEMPTS = 16;

/** A cache hash holding more fields than this has its expired entries removed on the next set. */
const CACHE_SWEEP_FIELDS = 32;

/** Server replies that mean "not now" (loading, busy script, failover, out of memory), not a bad request. */
const UNAVAILABLE_REPLIES = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY|OOM|NOREPLICAS)\b/;

/** ioredis's own messages for a connection that is gone or a reply that never came. */
const CONNECTION_LOST =
  /^(Connection is closed|Stream isn't writeable|Command timed out|connect ETIMEDOUT|Reached the max retries)/;

/**
 * Maps client errors to Cairn codes: anything meaning the server cannot be reached or cannot serve now is
 * CAIRN_UNAVAILABLE; other errors pass through unchanged.
 */
export function mapRedisError(e: unknown): unknown {
  if (e instanceof CairnError || typeof e !== 'object' || e === null) return e;
  const { code, name, message } = e as { code?: unknown; name?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : '';
  if (
    (typeof code === 'string' && NETWORK_CODES.has(code)) ||
    name === 'MaxRetriesPerRequestError' ||
    CONNECTION_LOST.test(text) ||
    UNAVAILABLE_REPLIES.test(text)
  ) {
    return new CairnError(
      'CAIRN_UNAVAILABLE',
      `Redis unavailable: ${text || 'connection failed'}`,
      undefined,
      {
        cause: e,
      },
    );
  }
  return e;
}

/** A Lua script run by SHA (EVALSHA), loaded on first use or after a server restart (EVAL). */
class Script {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

/*
 * Lua notes: Redis runs Lua 5.1, whose numbers are doubles (the same arithmetic as JS); `2 ^ x` is C pow.
 * Numbers are passed back to Redis as '%.17g' strings, which round-trip a double exactly. Clamped weights
 * are computed in JS by features/interactions.ts (the training definition) and passed in; only the per-user
 * cap, which reads the holdings stored here, is computed in Lua (a step-for-step copy of
 * features/popularity.ts `capContribution`), and erases pass the contributions JS recomputed.
 */

/**
 * KEYS: 1 watermarks, 2 meta, 3 popularity, 4 feature states, then per user of the batch its history, cache,
 * holdings and cache-version keys. ARGV: 1 half-life ms, 2 max exponent, 3 history limit, 4 history TTL ms, 5 per-user cap
 * (-1: none), 6 the event watermark and 7 the feature generation the states were folded from, 8 n, then
 * n × (item id, state JSON), then per event six values: seq, KEYS index of the user's history key (its
 * cache, holdings and cache-version keys follow), item id, timestamp, clamped weight, member. Returns 0 without changing
 * anything when the watermark is no longer ARGV[6] or the generation no longer ARGV[7] (the states were
 * folded from an older state), else 1.
 */
const APPLY_EVENTS = new Script(`
local wm = tonumber(redis.call('HGET', KEYS[1], 'events') or '0')
if wm ~= tonumber(ARGV[6]) then return 0 end
if (redis.call('HGET', KEYS[1], 'fgen') or '0') ~= ARGV[7] then return 0 end
local nStates = tonumber(ARGV[8])
for j = 9, 8 + 2 * nStates, 2 do
  redis.call('HSET', KEYS[4], ARGV[j], ARGV[j + 1])
end
local t0 = redis.call('HGET', KEYS[2], 't0')
if t0 then t0 = tonumber(t0) end
local H = tonumber(ARGV[1])
local maxExp = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local cap = tonumber(ARGV[5])
local top = wm
local touched = {}
local function capped(key, item, w, ts)
  local h = redis.call('HGET', key, item)
  local held, at, added = 0, ts, 0
  if h then
    local sep = string.find(h, ' ', 1, true)
    held = tonumber(string.sub(h, 1, sep - 1))
    at = tonumber(string.sub(h, sep + 1))
  end
  if ts >= at then
    local current = held * 2 ^ ((at - ts) / H)
    added = math.max(0, math.min(w, cap - current))
    held = current + added
    at = ts
  else
    local room = cap - held
    if room > 0 then added = math.min(w, room * 2 ^ ((at - ts) / H)) end
    held = held + added * 2 ^ ((ts - at) / H)
  end
  redis.call('HSET', key, item, string.format('%.17g', held) .. ' ' .. string.format('%.17g', at))
  return added
end
for i = 9 + 2 * nStates, #ARGV, 6 do
  local seq = tonumber(ARGV[i])
  if seq > top then
    top = seq
    local u = tonumber(ARGV[i + 1])
    local ts = tonumber(ARGV[i + 3])
    local w = tonumber(ARGV[i + 4])
    redis.call('ZADD', KEYS[u], ARGV[i + 3], ARGV[i + 5])
    touched[u] = true
    if w > 0 and cap >= 0 then w = capped(KEYS[u + 2], ARGV[i + 2], w, ts) end
    if w > 0 then
      if not t0 then
        t0 = ts
        redis.call('HSET', KEYS[2], 't0', ARGV[i + 3])
      end
      local x = (ts - t0) / H
      if x > maxExp then
        redis.call('ZUNIONSTORE', KEYS[3], 1, KEYS[3], 'WEIGHTS', string.format('%.17g', 2 ^ (-x)))
        redis.call('ZREMRANGEBYSCORE', KEYS[3], 0, 0)
        t0 = ts
        redis.call('HSET', KEYS[2], 't0', ARGV[i + 3])
        x = 0
      end
      local c = w * 2 ^ x
      if c > 0 then
        redis.call('ZINCRBY', KEYS[3], string.format('%.17g', -c), ARGV[i + 2])
      end
    end
  end
end
for u in pairs(touched) do
  redis.call('ZREMRANGEBYRANK', KEYS[u], 0, -(limit + 1))
  redis.call('PEXPIRE', KEYS[u], ARGV[4])
  redis.call('DEL', KEYS[u + 1])
  redis.call('PEXPIRE', KEYS[u + 2], ARGV[4])
  redis.call('INCR', KEYS[u + 3])
  redis.call('PEXPIRE', KEYS[u + 3], ARGV[4])
end
if top > wm then
  redis.call('HSET', KEYS[1], 'events', string.format('%.17g', top))
end
return 1
`);

/**
 * KEYS: 1 watermarks, 2 meta, 3 popularity, 4 opt-outs, 5 items hash, 6 item ids, 7 user metadata, 8 feature
 * states, then per erased user its history, cache, holdings and cache-version keys. ARGV: 1 half-life ms, 2 residue
 * tolerance, 3 1 to compare-and-set (0: no erase, no check), 4 change watermark, 5 event watermark and
 * 6 feature generation the states were unfolded from, 7 n, then n × (item id, state JSON or '' to delete),
 * then per record: seq, op, operands:
 *   I n (id json)×n | U userId 0/1 metaJson | E userId keyIndex n (itemId timestamp seq weight)×n | C
 * An erased event only subtracts popularity if its seq is at or below the event watermark: events past it
 * were never added here (the two logs are consumed independently). Its weight is what it contributed.
 * Returns 0 without changing anything when a compared value moved, else 1.
 */
const APPLY_CHANGES = new Script(`
local wm = tonumber(redis.call('HGET', KEYS[1], 'changes') or '0')
local applied = tonumber(redis.call('HGET', KEYS[1], 'events') or '0')
if ARGV[3] == '1' then
  if wm ~= tonumber(ARGV[4]) or applied ~= tonumber(ARGV[5]) then return 0 end
  if (redis.call('HGET', KEYS[1], 'fgen') or '0') ~= ARGV[6] then return 0 end
end
local nStates = tonumber(ARGV[7])
if nStates > 0 then
  for j = 8, 7 + 2 * nStates, 2 do
    if ARGV[j + 1] == '' then
      redis.call('HDEL', KEYS[8], ARGV[j])
    else
      redis.call('HSET', KEYS[8], ARGV[j], ARGV[j + 1])
    end
  end
  redis.call('HINCRBY', KEYS[1], 'fgen', 1)
end
local t0 = redis.call('HGET', KEYS[2], 't0')
if t0 then t0 = tonumber(t0) end
local H = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local top = wm
local i = 8 + 2 * nStates
while i <= #ARGV do
  local seq = tonumber(ARGV[i])
  local op = ARGV[i + 1]
  local apply = seq > top
  if apply then top = seq end
  i = i + 2
  if op == 'I' then
    local n = tonumber(ARGV[i])
    i = i + 1
    if apply then
      for j = i, i + 2 * n - 1, 2 do
        redis.call('HSET', KEYS[5], ARGV[j], ARGV[j + 1])
        redis.call('ZADD', KEYS[6], 0, ARGV[j])
      end
    end
    i = i + 2 * n
  elseif op == 'U' then
    if apply then
      if ARGV[i + 1] == '1' then
        redis.call('SADD', KEYS[4], ARGV[i])
      else
        redis.call('SREM', KEYS[4], ARGV[i])
      end
      redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 2])
      -- The user's cached answers were computed from the record this one replaces.
      local k = tonumber(ARGV[i + 3])
      redis.call('DEL', KEYS[k])
      redis.call('INCR', KEYS[k + 1])
      redis.call('PEXPIRE', KEYS[k + 1], ARGV[i + 4])
    end
    i = i + 5
  elseif op == 'E' then
    local k = tonumber(ARGV[i + 1])
    local n = tonumber(ARGV[i + 2])
    if apply then
      redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3])
      redis.call('HINCRBY', KEYS[1], 'cepoch', 1)
      redis.call('SREM', KEYS[4], ARGV[i])
      redis.call('HDEL', KEYS[7], ARGV[i])
      if t0 then
        local amounts = {}
        local items = {}
        for j = i + 3, i + 3 + 4 * (n - 1), 4 do
          local w = tonumber(ARGV[j + 3])
          if w > 0 and tonumber(ARGV[j + 2]) <= applied then
            local c = w * 2 ^ ((tonumber(ARGV[j + 1]) - t0) / H)
            local item = ARGV[j]
            if amounts[item] == nil then
              amounts[item] = c
              items[#items + 1] = item
            else
              amounts[item] = amounts[item] + c
            end
          end
        end
        for _, item in ipairs(items) do
          local current = redis.call('ZSCORE', KEYS[3], item)
          if current then
            local amount = amounts[item]
            local left = -tonumber(current) - amount
            if left > amount * tol then
              redis.call('ZADD', KEYS[3], string.format('%.17g', -left), item)
            else
              redis.call('ZREM', KEYS[3], item)
            end
          end
        end
      end
    end
    i = i + 3 + 4 * n
  elseif op ~= 'C' then
    return redis.error_reply('unknown change op ' .. tostring(op))
  end
end
if top > wm then
  redis.call('HSET', KEYS[1], 'changes', string.format('%.17g', top))
end
return 1
`);

/**
 * KEYS: 1 watermarks, 2 feature states, 3 user metadata. ARGV: n, n item ids, then user ids. Returns the
 * event watermark, the change watermark, the feature generation, the n items' states (nil when absent),
 * then the users' metadata (nil when absent), read at one instant.
 */
const READ_FOR_FOLD = new Script(`
local r = redis.call('HMGET', KEYS[1], 'events', 'changes', 'fgen')
for i = 1, 3 do r[i] = r[i] or '0' end
local n = tonumber(ARGV[1])
for i = 2, n + 1 do r[i + 2] = redis.call('HGET', KEYS[2], ARGV[i]) or false end
for i = n + 2, #ARGV do r[i + 2] = redis.call('HGET', KEYS[3], ARGV[i]) or false end
return r
`);

/** What applyEvents and applyChanges read before folding or unfolding (one READ_FOR_FOLD round trip). */
interface FoldInput {
  /** Event and change watermarks. */
  events: number;
  changes: number;
  /** Feature generation (`fgen`), compared as the string stored. */
  gen: string;
  /** Per item asked for, its state (null when absent). */
  states: Map<string, ItemFeatureState | null>;
  /** Segments of the users asked for that have metadata. */
  segments: Map<string, readonly string[]>;
}

/** KEYS: 1 meta, 2 popularity. ARGV: start, stop. Returns {t0, member, score, …} or {} without popularity. */
const POPULAR = new Script(`
local t0 = redis.call('HGET', KEYS[1], 't0')
if not t0 then return {} end
local r = redis.call('ZRANGE', KEYS[2], ARGV[1], ARGV[2], 'WITHSCORES')
table.insert(r, 1, t0)
return r
`);

/** KEYS: 1 meta, 2 popularity. ARGV: item ids. Returns {t0, score or false, …} or {} without popularity. */
const POPULARITY = new Script(`
local t0 = redis.call('HGET', KEYS[1], 't0')
if not t0 then return {} end
local r = { t0 }
for i = 1, #ARGV do
  r[i + 1] = redis.call('ZSCORE', KEYS[2], ARGV[i]) or false
end
return r
`);

/** KEYS: 1 item ids, 2 items hash. ARGV: lower bound ('-' or '(' .. after), count. Returns item JSONs. */
const ITEMS = new Script(`
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], '+', 'BYLEX', 'LIMIT', 0, ARGV[2])
local r = {}
for i = 1, #ids do
  local v = redis.call('HGET', KEYS[2], ids[i])
  if v then r[#r + 1] = v end
end
return r
`);

const REDIS_NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/** KEYS: 1 cache hash. ARGV: key. The value when present and not expired (by the Redis clock), else nil. */
const CACHE_GET = new Script(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
${REDIS_NOW}
local sep = string.find(v, ':', 1, true)
if tonumber(string.sub(v, 1, sep - 1)) <= now then return false end
return string.sub(v, sep + 1)
`);

/** Lua: the user's cache version from the watermarks hash and the user's cache-version counter. */
const CACHE_VERSION_LUA = `
local function cacheVersion(wm, cver)
  return (redis.call('HGET', wm, 'cepoch') or '0') .. '.' .. (redis.call('GET', cver) or '0')
end
`;

/** KEYS: 1 watermarks, 2 cache-version counter. The user's cache version (see the key layout above). */
const CACHE_VERSION = new Script(`
${CACHE_VERSION_LUA}
return cacheVersion(KEYS[1], KEYS[2])
`);

/**
 * KEYS: 1 cache hash, 2 watermarks, 3 cache-version counter. ARGV: key, value, TTL ms (integer ≥ 1), sweep
 * threshold, the cache version the value was computed at ('' for none). Nothing is stored (returns 0) when
 * the user's version moved on. The hash lives as long as its longest-lived entry; expired entries are
 * removed once it grows past the threshold.
 */
const CACHE_SET = new Script(`
${CACHE_VERSION_LUA}
if ARGV[5] ~= '' and cacheVersion(KEYS[2], KEYS[3]) ~= ARGV[5] then return 0 end
${REDIS_NOW}
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.17g', now + ttl) .. ':' .. ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[4]) then
  local all = redis.call('HGETALL', KEYS[1])
  for j = 1, #all, 2 do
    local v = all[j + 1]
    if tonumber(string.sub(v, 1, string.find(v, ':', 1, true) - 1)) <= now then
      redis.call('HDEL', KEYS[1], all[j])
    end
  end
end
return 1
`);

/** Escapes glob characters so a SCAN pattern matches the prefix literally. */
const globEscape = (s: string): string => s.replace(/[*?[\]\\]/g, '\\$&');

/** A history member: fixed-width seq (the tie order) + the event minus the user id (the key has it). */
function historyMember(e: StoredEvent): string {
  return (
    String(e.seq).padStart(SEQ_DIGITS, '0') +
    JSON.stringify([e.eventId, e.itemId, e.type, e.value, e.timestamp, e.context])
  );
}

function parseHistoryMember(userId: string, member: string): StoredEvent {
  const [eventId, itemId, type, value, timestamp, context] = JSON.parse(member.slice(SEQ_DIGITS)) as [
    string,
    string,
    string,
    number | null,
    number,
    StoredEvent['context'],
  ];
  return {
    seq: Number(member.slice(0, SEQ_DIGITS)),
    eventId,
    userId,
    itemId,
    type,
    value,
    timestamp,
    context,
  };
}

const str = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v));

/** Redis implementation of `OnlineState` (see the file comment); `kind` is `redis`. */
export class RedisOnlineState implements OnlineState {
  readonly kind = 'redis';
  /** The connection; shared with the caller when one was passed in. */
  readonly client: Redis;
  private readonly owned: boolean;
  private readonly options: OnlineStateOptions;
  private readonly rules: ContributionRules;
  private readonly halfLife: number;
  private readonly historyTtlMs: number;
  private readonly featureConfig: FeatureConfig;
  private readonly k: {
    wm: string;
    meta: string;
    pop: string;
    optout: string;
    features: string;
    users: string;
    items: string;
    itemIds: string;
    history: string;
    cache: string;
    contrib: string;
    cver: string;
    all: string;
  };
  private closed = false;

  constructor(options: RedisOnlineStateOptions) {
    const fields: { field: string; message: string }[] = [];
    if (!(options.popularityHalfLifeDays > 0) || !Number.isFinite(options.popularityHalfLifeDays)) {
      fields.push({ field: 'serving.popularityHalfLifeDays', message: 'must be a positive number' });
    }
    if (!Number.isInteger(options.historyLimit) || options.historyLimit < 1) {
      fields.push({ field: 'serving.historyLimit', message: 'must be an integer ≥ 1' });
    }
    fields.push(...weightLimitIssues(options));
    fields.push(...featureConfigIssues(options.features ?? FEATURE_DEFAULTS));
    if ((options.url === undefined) === (options.client === undefined)) {
      fields.push({ field: 'redis.url', message: 'give exactly one of url and client' });
    }
    const clientPrefix = options.client?.options.keyPrefix;
    if (clientPrefix) {
      fields.push({ field: 'redis.keyPrefix', message: 'the shared client must not set its own keyPrefix' });
    }
    if (fields.length > 0) throw new CairnError('CAIRN_CONFIG_INVALID', fields[0].message, { fields });

    this.options = {
      types: { ...options.types },
      popularityHalfLifeDays: options.popularityHalfLifeDays,
      historyLimit: options.historyLimit,
      maxEventWeight: options.maxEventWeight,
      maxUserItemWeight: options.maxUserItemWeight,
      features: options.features,
    };
    this.featureConfig = featureConfigOf(this.options);
    this.rules = new ContributionRules(this.options.types, options.popularityHalfLifeDays, this.options);
    this.halfLife = this.rules.halfLife;
    this.historyTtlMs = Math.max(1, Math.ceil(options.historyTtlMs ?? DEFAULT_HISTORY_TTL_MS));
    const p = `${options.keyPrefix}online:`;
    this.k = {
      wm: `${p}wm`,
      meta: `${p}meta`,
      pop: `${p}pop`,
      optout: `${p}optout`,
      features: `${p}features`,
      users: `${p}users`,
      items: `${p}items`,
      itemIds: `${p}item-ids`,
      history: `${p}history:`,
      cache: `${p}cache:`,
      contrib: `${p}contrib:`,
      cver: `${p}cver:`,
      all: `${globEscape(p)}*`,
    };
    if (options.client) {
      this.client = options.client;
      this.owned = false;
    } else {
      this.client = new Redis(options.url!, {
        lazyConnect: true,
        connectTimeout: 5000,
        commandTimeout: options.commandTimeoutMs ?? 5000,
        // A command in flight when the connection drops waits for one reconnection attempt and then fails
        // (mapped to CAIRN_UNAVAILABLE); one issued while it is down fails at once (see guard), so serving
        // falls back quickly instead of queueing for tens of seconds.
        maxRetriesPerRequest: 1,
        retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
      });
      // Connection errors surface through the commands that fail; without a listener ioredis logs each one.
      this.client.on('error', () => undefined);
      this.owned = true;
    }
  }

  /** Creates the adapter and checks the server answers (else CAIRN_UNAVAILABLE, releasing the client). */
  static async open(options: RedisOnlineStateOptions): Promise<RedisOnlineState> {
    const state = new RedisOnlineState(options);
    try {
      if (state.owned) await state.client.connect();
      await state.client.ping();
    } catch (e) {
      await state.close();
      throw mapRedisError(e);
    }
    return state;
  }

  /**
   * Applies a batch atomically: one script reads what the fold needs, one applies the batch with the folded
   * states (compare-and-set on the watermark, retried when another writer moved it); see
   * OnlineState.applyEvents.
   */
  applyEvents(events: StoredEvent[]): Promise<void> {
    return this.guard(async () => {
      if (events.length === 0) return;
      await this.untilApplied(async () => {
        const folded = await this.foldBatch(events);
        if (folded === null) return true; // every event is at or below the watermark: nothing to apply
        return (await this.applyFolded(events, folded.wm, folded.gen, folded.states)) === 1;
      });
    });
  }

  /**
   * Runs a read-compute-write `attempt` until it reports its compare-and-set succeeded (each failure is
   * another writer's progress), at most MAX_APPLY_ATTEMPTS times.
   */
  private async untilApplied(attempt: () => Promise<boolean>): Promise<void> {
    for (let n = 1; !(await attempt()); n++) {
      if (n >= MAX_APPLY_ATTEMPTS) {
        throw new CairnError(
          'CAIRN_UNAVAILABLE',
          'online state: the watermarks kept moving (concurrent writers)',
        );
      }
    }
  }

  /**
   * Reads both watermarks, the feature generation, the items' states and the users' metadata at one
   * instant (one round trip): the input of a fold (applyEvents) or an unfold (applyChanges, on erase).
   */
  private async readForFold(itemIds: string[], userIds: string[]): Promise<FoldInput> {
    const args: (string | number)[] = [itemIds.length];
    for (const id of itemIds) args.push(id);
    for (const id of userIds) args.push(id);
    const reply = (await this.eval(
      READ_FOR_FOLD,
      [this.k.wm, this.k.features, this.k.users],
      args,
    )) as unknown[];
    const states = new Map<string, ItemFeatureState | null>();
    itemIds.forEach((id, i) => {
      const v = reply[i + 3];
      states.set(id, v === null || v === undefined ? null : (JSON.parse(str(v)) as ItemFeatureState));
    });
    const segments = new Map<string, readonly string[]>();
    userIds.forEach((id, i) => {
      const v = reply[itemIds.length + 3 + i];
      if (v !== null && v !== undefined) segments.set(id, (JSON.parse(str(v)) as UserMeta).segments);
    });
    return {
      events: Number(str(reply[0])),
      changes: Number(str(reply[1])),
      gen: str(reply[2]),
      states,
      segments,
    };
  }

  /**
   * Reads what the fold needs (readForFold) and folds the events past the watermark (the same skip rule as
   * the apply script); null when none is.
   */
  private async foldBatch(
    events: StoredEvent[],
  ): Promise<{ wm: number; gen: string; states: Map<string, ItemFeatureState> } | null> {
    const itemIds = [...new Set(events.map((e) => e.itemId))];
    const userIds = [...new Set(events.map((e) => e.userId))];
    const read = await this.readForFold(itemIds, userIds);
    const wm = read.events;
    if (!events.some((e) => e.seq > wm)) return null;
    const states = new Map<string, ItemFeatureState>();
    let top = wm;
    for (const e of events) {
      if (!(e.seq > top)) continue;
      top = e.seq;
      const state = states.get(e.itemId) ?? read.states.get(e.itemId) ?? null;
      const event = { ...e, segments: read.segments.get(e.userId) };
      states.set(e.itemId, foldItemEvent(state, event, this.featureConfig));
    }
    return { wm, gen: read.gen, states };
  }

  /**
   * The item states of a change batch's erases with the erased users' counted events (seq ≤ the event
   * watermark read) taken out, under the segments each user has when their erase is reached (a `user`
   * record earlier in the batch counts; records at or below the change watermark are skipped, as the
   * script skips them). null when the batch erases nobody. A state left with no event maps to null.
   */
  private async unfoldBatch(
    records: LogRecord<EntityChange>[],
  ): Promise<{ read: FoldInput; states: Map<string, ItemFeatureState | null> } | null> {
    const itemIds = new Set<string>();
    const userIds = new Set<string>();
    for (const { value: change } of records) {
      if (change.kind !== 'erase') continue;
      userIds.add(change.userId);
      for (const e of change.events) itemIds.add(e.itemId);
    }
    if (userIds.size === 0) return null;
    const read = await this.readForFold([...itemIds], [...userIds]);
    const segments = new Map(read.segments);
    const states = new Map<string, ItemFeatureState | null>();
    let top = read.changes;
    for (const { seq, value: change } of records) {
      if (!(seq > top)) continue;
      top = seq;
      if (change.kind === 'user') {
        if (userIds.has(change.user.id)) segments.set(change.user.id, change.user.segments);
      } else if (change.kind === 'erase') {
        const userSegments = segments.get(change.userId);
        segments.delete(change.userId);
        for (const e of change.events) {
          if (e.seq > read.events) continue;
          const state = states.has(e.itemId) ? states.get(e.itemId)! : read.states.get(e.itemId)!;
          if (state === null) continue;
          states.set(e.itemId, unfoldItemEvent(state, { ...e, segments: userSegments }, this.featureConfig));
        }
      }
    }
    return { read, states };
  }

  /**
   * Runs the apply script with folded states; 0 when the watermark moved since `wm` or an erase moved the
   * feature generation since `gen` (nothing changed).
   */
  private async applyFolded(
    events: StoredEvent[],
    wm: number,
    gen: string,
    states: Map<string, ItemFeatureState>,
  ): Promise<number> {
    const keys = [this.k.wm, this.k.meta, this.k.pop, this.k.features];
    const userKey = new Map<string, number>();
    const args: (string | number)[] = [
      this.halfLife,
      MAX_EXPONENT,
      this.options.historyLimit,
      this.historyTtlMs,
      this.rules.cap ?? -1,
      wm,
      gen,
      states.size,
    ];
    for (const [itemId, state] of states) args.push(itemId, JSON.stringify(state));
    for (const e of events) {
      let u = userKey.get(e.userId);
      if (u === undefined) {
        u = keys.length + 1; // Lua's KEYS is 1-based
        userKey.set(e.userId, u);
        keys.push(
          this.k.history + e.userId,
          this.k.cache + e.userId,
          this.k.contrib + e.userId,
          this.k.cver + e.userId,
        );
      }
      args.push(e.seq, u, e.itemId, e.timestamp, this.rules.weight(e), historyMember(e));
    }
    return Number(await this.eval(APPLY_EVENTS, keys, args));
  }

  /**
   * Applies a batch atomically (one script, one round trip); a batch with an erase first reads and unfolds
   * the erased users' item states (readForFold), and its script writes them with a compare-and-set on both
   * watermarks and the feature generation, retried like applyEvents. See OnlineState.applyChanges.
   */
  applyChanges(records: LogRecord<EntityChange>[]): Promise<void> {
    return this.guard(async () => {
      if (records.length === 0) return;
      await this.untilApplied(async () => {
        const unfolded = await this.unfoldBatch(records);
        return (await this.applyUnfolded(records, unfolded)) === 1;
      });
    });
  }

  /** Runs the change script (with the unfolded states, if any); 0 when a compared value moved. */
  private async applyUnfolded(
    records: LogRecord<EntityChange>[],
    unfolded: { read: FoldInput; states: Map<string, ItemFeatureState | null> } | null,
  ): Promise<number> {
    const keys = [
      this.k.wm,
      this.k.meta,
      this.k.pop,
      this.k.optout,
      this.k.items,
      this.k.itemIds,
      this.k.users,
      this.k.features,
    ];
    const args: (string | number)[] = [this.halfLife, RESIDUE_TOLERANCE];
    if (unfolded === null) args.push(0, 0, 0, '0', 0);
    else {
      const { read, states } = unfolded;
      args.push(1, read.changes, read.events, read.gen, states.size);
      for (const [itemId, state] of states) args.push(itemId, state === null ? '' : JSON.stringify(state));
    }
    for (const { seq, value: change } of records) {
      switch (change.kind) {
        case 'items':
          args.push(seq, 'I', change.items.length);
          for (const item of change.items) args.push(item.id, JSON.stringify(item));
          break;
        case 'user': {
          const index = keys.length + 1;
          keys.push(this.k.cache + change.user.id, this.k.cver + change.user.id);
          args.push(
            seq,
            'U',
            change.user.id,
            change.user.optOut ? '1' : '0',
            JSON.stringify({ segments: change.user.segments, attributes: change.user.attributes }),
            index,
            this.historyTtlMs,
          );
          break;
        }
        case 'erase': {
          const index = keys.length + 1;
          keys.push(
            this.k.history + change.userId,
            this.k.cache + change.userId,
            this.k.contrib + change.userId,
            this.k.cver + change.userId,
          );
          // Contributions of every erased event (clamped and capped as when added); the script keeps
          // those at or below its event watermark, a prefix of the user's events in log order.
          const contributions = this.rules.replay(change.events);
          args.push(seq, 'E', change.userId, index, contributions.length);
          for (const c of contributions) args.push(c.itemId, c.timestamp, c.seq, c.weight);
          break;
        }
        case 'champion':
        case 'experiment':
          // Only the watermark moves (serving loads champions and experiments itself).
          args.push(seq, 'C');
          break;
      }
    }
    return Number(await this.eval(APPLY_CHANGES, keys, args));
  }

  watermarks(): Promise<OnlineWatermarks> {
    return this.guard(async () => {
      const [events, changes] = await this.client.hmget(this.k.wm, 'events', 'changes');
      return { events: Number(events ?? 0), changes: Number(changes ?? 0) };
    });
  }

  recentEvents(userId: string, limit: number): Promise<StoredEvent[]> {
    return this.guard(async () => {
      const n = Math.min(Math.floor(limit), this.options.historyLimit);
      if (!(n > 0)) return [];
      const members = await this.client.zrevrange(this.k.history + userId, 0, n - 1);
      return members.map((m) => parseHistoryMember(userId, str(m)));
    });
  }

  optedOut(userId: string): Promise<boolean> {
    return this.guard(async () => (await this.client.sismember(this.k.optout, userId)) === 1);
  }

  popular(offset: number, count: number, now: number): Promise<PopularEntry[]> {
    return this.guard(async () => {
      const start = Math.floor(offset);
      const n = Math.floor(count);
      if (!(n > 0) || !(start >= 0) || !Number.isFinite(start)) return [];
      const stop = Number.isFinite(n) ? start + n - 1 : -1; // -1: to the end
      const reply = (await this.eval(POPULAR, [this.k.meta, this.k.pop], [start, stop])) as unknown[];
      if (reply.length === 0) return [];
      const scale = Math.pow(2, (Number(str(reply[0])) - now) / this.halfLife);
      const out: PopularEntry[] = [];
      for (let i = 1; i + 1 < reply.length; i += 2) {
        const score = -Number(str(reply[i + 1])) * scale;
        // Redis answers `-inf` (NaN here) for a sum overflowed before weights were clamped: never listed.
        if (Number.isFinite(score)) out.push({ itemId: str(reply[i]), score });
      }
      return out;
    });
  }

  popularity(itemIds: string[], now: number): Promise<number[]> {
    return this.guard(async () => {
      if (itemIds.length === 0) return [];
      const reply = (await this.eval(POPULARITY, [this.k.meta, this.k.pop], itemIds)) as unknown[];
      if (reply.length === 0) return itemIds.map(() => 0);
      const scale = Math.pow(2, (Number(str(reply[0])) - now) / this.halfLife);
      return itemIds.map((_, i) => {
        const v = reply[i + 1];
        const score = v === null || v === undefined ? 0 : -Number(str(v)) * scale;
        return Number.isFinite(score) ? score : 0;
      });
    });
  }

  popularCount(): Promise<number> {
    return this.guard(() => this.client.zcard(this.k.pop));
  }

  items(after: string | undefined, limit: number): Promise<Item[]> {
    return this.guard(async () => {
      const n = Math.floor(limit);
      if (!(n > 0)) return [];
      const from = after === undefined ? '-' : `(${after}`;
      const count = Number.isFinite(n) ? n : -1; // LIMIT 0 -1: all
      const reply = (await this.eval(ITEMS, [this.k.itemIds, this.k.items], [from, count])) as unknown[];
      return reply.map((v) => JSON.parse(str(v)) as Item);
    });
  }

  itemFeatures(itemIds: string[]): Promise<(ItemFeatureState | null)[]> {
    return this.guard(async () => {
      if (itemIds.length === 0) return [];
      const reply = await this.client.hmget(this.k.features, ...itemIds);
      return reply.map((v) => (v === null ? null : (JSON.parse(v) as ItemFeatureState)));
    });
  }

  userMeta(userId: string): Promise<UserMeta | null> {
    return this.guard(async () => {
      const v = await this.client.hget(this.k.users, userId);
      return v === null ? null : (JSON.parse(v) as UserMeta);
    });
  }

  cacheGet(userId: string, key: string): Promise<string | null> {
    return this.guard(async () => {
      const v = await this.eval(CACHE_GET, [this.k.cache + userId], [key]);
      return v === null || v === undefined ? null : str(v);
    });
  }

  cacheVersion(userId: string): Promise<string> {
    return this.guard(async () => str(await this.eval(CACHE_VERSION, [this.k.wm, this.k.cver + userId], [])));
  }

  cacheSet(userId: string, key: string, value: string, ttlMs: number, version?: string): Promise<void> {
    return this.guard(async () => {
      if (!(ttlMs > 0)) {
        // Expires at once: nothing to keep, and an older answer under the key must not survive it.
        await this.client.hdel(this.k.cache + userId, key);
        return;
      }
      const ttl = Math.max(1, Math.ceil(ttlMs));
      await this.eval(
        CACHE_SET,
        [this.k.cache + userId, this.k.wm, this.k.cver + userId],
        [key, value, ttl, CACHE_SWEEP_FIELDS, version ?? ''],
      );
    });
  }

  /** Deletes every key under this adapter's prefix (SCAN + UNLINK, never FLUSHDB). */
  clear(): Promise<void> {
    return this.guard(async () => {
      let cursor = '0';
      do {
        const [next, keys] = await this.client.scan(cursor, 'MATCH', this.k.all, 'COUNT', 1000);
        cursor = str(next);
        if (keys.length > 0) await this.client.unlink(...keys.map(str));
      } while (cursor !== '0');
      // The cache epoch starts again above any it had (the time in ms), not at 0: a cache version read
      // before the clear never comes back for a history rebuilt since (OnlineState.cacheVersion).
      await this.client.hset(this.k.wm, 'cepoch', String(Date.now()));
    });
  }

  /** Quits the client if this adapter created it; a shared client stays open. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (!this.owned) return;
    if (this.client.status === 'end') return;
    // Resolve once the socket is closed, so a process (or test) can exit right after close(). A client
    // between reconnection attempts has no socket and may never emit 'end': the wait is bounded.
    let timer: NodeJS.Timeout | undefined;
    const ended = Promise.race([
      new Promise((resolve) => this.client.once('end', resolve)),
      new Promise((resolve) => (timer = setTimeout(resolve, 1000))),
    ]);
    if (this.client.status === 'ready') {
      try {
        await this.client.quit();
      } catch {
        this.client.disconnect(); // the server went away meanwhile: drop the socket instead
      }
    } else {
      this.client.disconnect();
    }
    if ((this.client.status as string) !== 'end') await ended;
    clearTimeout(timer);
  }

  /** EVALSHA, falling back to EVAL when the server does not know the script yet (first use, restart). */
  private async eval(script: Script, keys: string[], args: (string | number)[]): Promise<unknown> {
    // One array for `call`, never spread: a large batch has tens of thousands of arguments.
    const argv: (string | number)[] = [script.sha, keys.length];
    for (const key of keys) argv.push(key);
    for (const arg of args) argv.push(arg);
    try {
      return await this.client.call('EVALSHA', argv);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      argv[0] = script.source;
      return await this.client.call('EVAL', argv);
    }
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new CairnError('CAIRN_UNAVAILABLE', 'online state is closed');
    // Lost and waiting for the next attempt (up to 2 s away): queued, the command would wait for it or
    // the one after, and every request meanwhile with it.
    if (this.client.status === 'reconnecting')
      throw new CairnError('CAIRN_UNAVAILABLE', 'Redis unavailable: connection lost, reconnecting');
    try {
      return await fn();
    } catch (e) {
      throw mapRedisError(e);
    }
  }
}
