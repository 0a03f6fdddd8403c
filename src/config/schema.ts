/**
 * The one configuration schema, with defaults. Keys are camelCase; each leaf can be overridden by an
 * environment variable named after its path in upper snake case, e.g. `server.maxBatchEvents` →
 * `CAIRN_SERVER_MAX_BATCH_EVENTS`, `store.url` → `CAIRN_STORE_URL`.
 */
import { Type, type Static } from '@sinclair/typebox';

const EventTypeSpec = Type.Object(
  {
    weight: Type.Number({ minimum: 0 }),
    useValue: Type.Optional(Type.Boolean()),
    negative: Type.Optional(Type.Boolean()),
    minValue: Type.Optional(Type.Number()),
    /** Values above this are rejected (CAIRN_VALIDATION naming `value`), e.g. a 1–5 rating scale. */
    maxValue: Type.Optional(Type.Number()),
    /**
     * The item was only shown (an impression): it does not count as seen by the user (`serving.excludeSeen`),
     * so showing an offer does not remove it from the user's recommendations.
     */
    shownOnly: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    server: Type.Object(
      {
        host: Type.String({ default: '127.0.0.1' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
        bodyLimitBytes: Type.Integer({ minimum: 1024, default: 16 * 1024 * 1024 }),
        maxBatchEvents: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000 }),
        maxBatchItems: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000 }),
        /**
         * Browser origins allowed to call the API (CORS). Empty: no CORS headers, and a request carrying an
         * `Origin` header is refused on state-changing routes unless it has an API key.
         */
        corsOrigins: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
        /**
         * Budget of one request in ms, carried as the request context's deadline: past it, recommendation
         * routes answer with the cheapest labelled fallback instead of waiting (0: no deadline).
         */
        requestTimeoutMs: Type.Integer({ minimum: 0, default: 2000 }),
        /**
         * Back-pressure: requests in flight in this process (received, not yet answered) beyond which new
         * ones get 503 CAIRN_OVERLOADED with `Retry-After` instead of queueing (0: unbounded).
         */
        maxInFlight: Type.Integer({ minimum: 0, default: 512 }),
        /**
         * Back-pressure: mean event-loop delay over the last half second beyond which new requests get 503
         * CAIRN_OVERLOADED (0: off). `/health/live` and `/metrics` are never refused.
         */
        maxEventLoopDelayMs: Type.Integer({ minimum: 0, default: 1000 }),
        /**
         * The `api` role as this many processes sharing the port (Node's cluster: a supervisor forks them and
         * restarts one that dies; `/metrics` answers for all of them). Every core can then serve. Only the
         * `api` role: its state is in the shared backends; the other roles hold state of their own.
         */
        processes: Type.Integer({ minimum: 1, maximum: 256, default: 1 }),
      },
      { default: {}, additionalProperties: false },
    ),
    dataDir: Type.String({ default: './data' }),
    /**
     * Tenants served besides `default`. Each tenant is its own namespace on every backend (a SQLite file
     * under `dataDir/tenants/<t>`, a PostgreSQL schema `<schema>_t_<t>`, a Redis prefix, NATS streams),
     * so tenants never see each other's users, items, events, models, experiments or metrics.
     * Environment: `CAIRN_TENANTS='["acme","globex"]'`.
     */
    tenants: Type.Array(Type.String({ pattern: '^[a-z][a-z0-9_]{0,31}$' }), {
      default: [],
      uniqueItems: true,
    }),
    auth: Type.Object(
      {
        /** Every route but /health/* needs `Authorization: Bearer <key>` (keys: `cairn keys create`). */
        enabled: Type.Boolean({ default: false }),
        /** Allow binding a non-loopback address with auth disabled (refused otherwise). */
        allowInsecureBind: Type.Boolean({ default: false }),
        /** A verified key is trusted this long before it is looked up again (revocation takes effect within it). */
        keyCacheSeconds: Type.Number({ minimum: 0, default: 5 }),
      },
      { default: {}, additionalProperties: false },
    ),
    rateLimit: Type.Object(
      {
        enabled: Type.Boolean({ default: true }),
        /** Requests per window per API key (or per client IP for requests without a key). */
        perKey: Type.Integer({ minimum: 1, default: 60_000 }),
        perIp: Type.Integer({ minimum: 1, default: 6_000 }),
        windowSeconds: Type.Integer({ minimum: 1, default: 60 }),
        /** Loopback clients (127.0.0.1, ::1) are not limited: the embedded default's own tools and benchmarks. */
        exemptLoopback: Type.Boolean({ default: true }),
      },
      { default: {}, additionalProperties: false },
    ),
    privacy: Type.Object(
      {
        /**
         * Key of the keyed hash (HMAC-SHA256) that stands for user ids in logs and audit records. Empty:
         * a random key generated once and kept in the store.
         */
        logHashKey: Type.String({ default: '' }),
        /**
         * An erased user's id stays in the change log's erase record until every consumer applied it, and
         * at least this long (time for every replica to drop the user from the models in its memory);
         * then the record is removed (security/erasure.ts).
         */
        eraseGraceSeconds: Type.Number({ minimum: 0, default: 60 }),
        /** How often erase records that nobody needs any more are looked for. */
        eraseSweepSeconds: Type.Number({ exclusiveMinimum: 0, default: 10 }),
      },
      { default: {}, additionalProperties: false },
    ),
    store: Type.Object(
      {
        /** `sqlite://PATH` (relative to the working directory) or `postgres://…`. Empty: SQLite in dataDir. */
        url: Type.String({ default: '' }),
        /** PostgreSQL schema holding Cairn's tables (lets several deployments or tests share a database). */
        schema: Type.String({ default: 'public', pattern: '^[a-z_][a-z0-9_]*$' }),
        /**
         * SQLite durability: `full` (default) syncs the WAL on every commit, so an acknowledged write
         * survives power loss; `normal` survives a process crash only and ingests faster.
         */
        synchronous: Type.Union([Type.Literal('full'), Type.Literal('normal')], { default: 'full' }),
      },
      { default: {}, additionalProperties: false },
    ),
    redis: Type.Object(
      {
        /** `redis://host:port/db`. With `nats.url` and a PostgreSQL `store.url`, roles api/worker use Redis for online state and jobs. */
        url: Type.String({ default: '' }),
        /** Prefix of every key Cairn writes (lets deployments or tests share a Redis). */
        keyPrefix: Type.String({ default: 'cairn:', pattern: '^[A-Za-z0-9:_.-]{0,64}$' }),
      },
      { default: {}, additionalProperties: false },
    ),
    nats: Type.Object(
      {
        /** `nats://host:port`. With `redis.url` and a PostgreSQL `store.url`, roles api/worker use JetStream as the event log. */
        url: Type.String({ default: '' }),
        /** Prefix of the JetStream stream and subject names (`<PREFIX>_EVENTS`, `<PREFIX>_CHANGES`). */
        streamPrefix: Type.String({ default: 'CAIRN', pattern: '^[A-Za-z0-9_-]{1,32}$' }),
        /** How long JetStream recognizes a repeated event id by itself (the store of record dedupes beyond). */
        duplicateWindowSeconds: Type.Integer({ minimum: 1, default: 86_400 }),
      },
      { default: {}, additionalProperties: false },
    ),
    artifacts: Type.Object(
      {
        /** Where model artifacts live: empty follows the store (SQLite → files under dataDir, PostgreSQL → the database); `file://DIR` forces files. */
        url: Type.String({ default: '' }),
      },
      { default: {}, additionalProperties: false },
    ),
    jobs: Type.Object(
      {
        /** A worker's claim on a job lasts this long unless its heartbeat renews it; a dead worker's job is taken over after it. */
        leaseSeconds: Type.Integer({ minimum: 1, default: 30 }),
        /** Attempts before a retryable failure is final. */
        maxAttempts: Type.Integer({ minimum: 1, default: 3 }),
        /** Backoff before the second attempt; doubles per attempt. */
        backoffSeconds: Type.Number({ minimum: 0, default: 5 }),
      },
      { default: {}, additionalProperties: false },
    ),
    events: Type.Object(
      {
        types: Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_]{0,63}$' }), EventTypeSpec, {
          default: {
            view: { weight: 1 },
            click: { weight: 2 },
            add_to_cart: { weight: 4 },
            purchase: { weight: 8 },
            // 0–10 takes 1–5 stars and MovieTweetings' 0–10 alike; a value outside is rejected.
            rating: { weight: 1, useValue: true, minValue: 0, maxValue: 10 },
            like: { weight: 4 },
            dislike: { weight: 0, negative: true },
            return: { weight: 0, negative: true },
            // An offer or item was shown (next-best-offer records them): counts exposures, weighs nothing.
            impression: { weight: 0, shownOnly: true },
            // The user waved an offer away: never shown or recommended to them again (a suppressing outcome).
            dismiss: { weight: 0, negative: true },
          },
        }),
        /**
         * Abuse resistance: one event adds at most this much weight to popularity and trending (its type
         * weight × value is clamped), whatever its value.
         */
        maxEventWeight: Type.Number({ exclusiveMinimum: 0, default: 10 }),
        /**
         * One user adds at most this much weight to one item's popularity over the popularity window (a
         * user repeating purchases of one item counts up to it, then no more).
         */
        maxUserItemWeight: Type.Number({ exclusiveMinimum: 0, default: 16 }),
        /** Events older than this many days into the future of the server clock are rejected. */
        maxFutureSkewSeconds: Type.Integer({ minimum: 0, default: 300 }),
      },
      { default: {}, additionalProperties: false },
    ),
    training: Type.Object(
      {
        algorithm: Type.Union(
          [
            Type.Literal('als'),
            Type.Literal('bpr'),
            Type.Literal('itemknn'),
            Type.Literal('ease'),
            Type.Literal('rp3beta'),
            Type.Literal('pop'),
          ],
          {
            default: 'als',
          },
        ),
        /** Worker threads for training; 0 means one per core. */
        threads: Type.Integer({ minimum: 0, maximum: 64, default: 0 }),
        seed: Type.Integer({ default: 42 }),
        /** Hyper-parameter overrides per algorithm, e.g. `{"als": {"factors": 64}}`. */
        params: Type.Record(
          Type.String(),
          Type.Record(Type.String(), Type.Union([Type.Number(), Type.String(), Type.Boolean()])),
          {
            default: {},
          },
        ),
        /** Fraction of each user's interactions held out to measure a new model before it is served. */
        holdoutFraction: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 0.5, default: 0.1 }),
        /**
         * Self-tuning: trials of a hyper-parameter search on a validation part carved from the training
         * part, warm-started from the champion's parameters, before the model is fitted (0: off).
         */
        tuneTrials: Type.Integer({ minimum: 0, maximum: 1000, default: 0 }),
        /** Wall-time budget of that search in seconds; the first trial always runs. */
        tuneBudgetSeconds: Type.Number({ minimum: 0, default: 600 }),
        /** Fewer positive interactions than this and training refuses (CAIRN_NOT_ENOUGH_DATA). */
        minInteractions: Type.Integer({ minimum: 1, default: 10 }),
        /** Promote a new model automatically when its holdout ndcg@10 is at least this fraction of the champion's. */
        autoPromoteMinRatio: Type.Number({ minimum: 0, default: 0.95 }),
        /** Cron expression (5 or 6 fields, server time zone) of scheduled retraining; empty: no schedule. */
        schedule: Type.String({ default: '' }),
        /** Retrain once this many new events arrived since the champion's training snapshot (0: off). */
        retrainAfterEvents: Type.Integer({ minimum: 0, default: 0 }),
        /** How often the data-volume trigger looks at the event log. */
        triggerCheckSeconds: Type.Number({ exclusiveMinimum: 0, default: 30 }),
        /** Promotion gate: the challenger against the champion on the same fresh holdout. */
        gate: Type.Object(
          {
            /**
             * Allowed relative shortfall per metric against the champion (0.05: up to 5 % worse passes).
             * ndcg@10 uses `1 − autoPromoteMinRatio` unless listed here.
             */
            tolerances: Type.Record(Type.String(), Type.Number({ minimum: 0 }), {
              default: { 'recall@10': 0.05, 'coverage@10': 0.5 },
            }),
            /** Fewer held-out interactions newer than the champion than this: use a random holdout. */
            minFreshInteractions: Type.Integer({ minimum: 1, default: 200 }),
            /** Fewer holdout users scored than this and a challenger cannot replace a champion. */
            minUsersScored: Type.Integer({ minimum: 1, default: 20 }),
            /** Top-k lists overlapping popularity's this much on average mean "a copy of popularity". */
            maxPopularityOverlap: Type.Number({ minimum: 0, maximum: 1, default: 0.9 }),
          },
          { default: {}, additionalProperties: false },
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    serving: Type.Object(
      {
        defaultK: Type.Integer({ minimum: 1, default: 10 }),
        maxK: Type.Integer({ minimum: 1, default: 200 }),
        /** Newest events of a user read per request (history used for exclusion and fold-in). */
        historyLimit: Type.Integer({ minimum: 1, default: 500 }),
        /** Recent items used by the similar-to-recent fallback. */
        recentItems: Type.Integer({ minimum: 1, default: 10 }),
        /** Half-life of the time-decayed popularity, in days. */
        popularityHalfLifeDays: Type.Number({ exclusiveMinimum: 0, default: 7 }),
        /** Exclude items the user already interacted with positively. */
        excludeSeen: Type.Boolean({ default: true }),
        /**
         * Personalized answers, and cold-start users' answers, are cached in the online state this long,
         * less a random 0–25 % per answer so answers stored together expire apart (0: off). A user's new
         * event or user record, an opt-out or an erase drops their entries; a new champion changes the key;
         * items that became unavailable are never served from it.
         */
        cacheTtlSeconds: Type.Number({ minimum: 0, default: 30 }),
        /**
         * An answer past its TTL is still served for up to this long while it is computed again in the
         * background, one answer at a time within a quarter of the event loop's time
         * (stale-while-revalidate), so expiring answers never queue requests behind their recomputation.
         * The invalidations above still drop it at once (0: an expired answer is computed on the request).
         */
        cacheStaleSeconds: Type.Number({ minimum: 0, default: 30 }),
        /**
         * Events of users' histories each serving process keeps, with what they gave (profile, the folded-in
         * vector per model version), by the user's cache version, for one answer lifetime (TTL + stale
         * window): an expired answer of a user who did nothing since is computed again without reading or
         * folding in their history (src/serving/user-states.ts). Least recently used first out (0: off).
         */
        userStateEvents: Type.Integer({ minimum: 0, default: 200_000 }),
        /** Readiness reports the model `stale` once the champion is older than this (0: never). */
        maxModelAgeSeconds: Type.Integer({ minimum: 0, default: 7 * 86_400 }),
      },
      { default: {}, additionalProperties: false },
    ),
    /** Feature store (src/features): item state kept online per event and rebuilt offline the same way. */
    features: Type.Object(
      {
        /** Half-lives (days) of the item's decayed positive weight, one windowed counter per entry. */
        halfLivesDays: Type.Array(Type.Number({ exclusiveMinimum: 0 }), {
          minItems: 1,
          maxItems: 8,
          default: [1, 7, 30],
        }),
        /** Per item, interaction counts are kept for at most this many distinct user segments. */
        maxSegmentsPerItem: Type.Integer({ minimum: 0, maximum: 1024, default: 32 }),
      },
      { default: {}, additionalProperties: false },
    ),
    /**
     * Two-stage ranking (src/algorithms/gbdt.ts, src/evaluation/ltr.ts): retrievers propose candidates,
     * LambdaMART ranks them on the ranking features. Defaults chosen on inner validation splits.
     */
    ranking: Type.Object(
      {
        /**
         * Serving: a model version whose artifact carries a trained ranker re-ranks its candidates with it
         * (an experiment arm's `ranker` overrides this either way). Off: the CF ranking answers.
         */
        enabled: Type.Boolean({ default: true }),
        /** Candidates per request after merging the retrievers' lists (round-robin). */
        candidates: Type.Integer({ minimum: 1, maximum: 10_000, default: 200 }),
        /**
         * Training: every training also learns a ranker over the trained model and the popular list
         * (training/ranker.ts), from the gate's holdout; it ships in the version only if it beats the
         * model's own ranking on held-out users.
         */
        train: Type.Boolean({ default: true }),
        /**
         * Training: irrelevant candidates kept per query (a seeded sample; every relevant one is kept). The
         * fit's cost is linear in rows; the queries kept apart to decide on shipping keep all candidates.
         */
        negatives: Type.Integer({ minimum: 1, default: 40 }),
        /**
         * Training: retrievers the ranker draws candidates from besides the model's own list and the popular
         * list: `trending` and `category` over the popular head (features/head-retrievers.ts), `similar`,
         * items similar to the user's recent ones (features/similar-retriever.ts), and `content` (not by
         * default), catalog items sharing categories and attributes with them, items without events
         * included (features/content-retriever.ts): neutral on the holdouts measured (docs/benchmarks.md)
         * and up to twice the ranker's fit time. Serving provides each.
         */
        extraRetrievers: Type.Array(
          Type.Union(['trending', 'category', 'similar', 'content'].map((n) => Type.Literal(n))),
          { uniqueItems: true, default: ['trending', 'category', 'similar'] },
        ),
        /** Training: held-out users turned into ranking queries, at most (a seeded sample). */
        maxQueries: Type.Integer({ minimum: 1, default: 5_000 }),
        /**
         * Training: at most this many of the newest served answers with a click or conversion (served log
         * and feedback) become ranking queries besides the held-out ones, their features as of when each
         * was served (training/ranker.ts); 0: none.
         */
        loggedQueries: Type.Integer({ minimum: 0, default: 5_000 }),
        /** Training: fewer queries with a relevant candidate than this and no ranker is learned. */
        minQueries: Type.Integer({ minimum: 1, default: 50 }),
        /** Training: share of the queries kept apart for early stopping and the ship decision. */
        validShare: Type.Number({ exclusiveMinimum: 0, maximum: 0.9, default: 0.2 }),
        /**
         * Offline (`cairn eval --algorithms ltr`): retrievers, in round-robin order. A trained version's
         * ranker uses the model's own algorithm and the popular list (what serving holds).
         */
        retrievers: Type.Array(
          Type.Union(['pop', 'itemknn', 'als', 'ease', 'bpr', 'rp3beta'].map((n) => Type.Literal(n))),
          { minItems: 1, uniqueItems: true, default: ['pop', 'itemknn', 'als', 'ease'] },
        ),
        /** EASE is not used as a retriever above this many items (dense EASE is O(items³)). */
        easeMaxItems: Type.Integer({ minimum: 0, default: 30_000 }),
        /** LambdaMART training (src/algorithms/gbdt.ts LAMBDAMART_DEFAULTS). */
        lambdaMart: Type.Object(
          {
            trees: Type.Integer({ minimum: 1, maximum: 100_000, default: 300 }),
            learningRate: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.1 }),
            leaves: Type.Integer({ minimum: 2, maximum: 4096, default: 15 }),
            minDataInLeaf: Type.Integer({ minimum: 1, default: 200 }),
            lambdaL2: Type.Number({ minimum: 0, default: 10 }),
            bins: Type.Integer({ minimum: 2, maximum: 255, default: 255 }),
            featureFraction: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.5 }),
            ndcgAt: Type.Integer({ minimum: 1, maximum: 10_000, default: 10 }),
            earlyStoppingRounds: Type.Integer({ minimum: 0, default: 50 }),
          },
          { default: {}, additionalProperties: false },
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    experiments: Type.Object(
      {
        /** Record every served answer (request id, user, items, variant, model) for feedback attribution. */
        servedLog: Type.Boolean({ default: true }),
        /**
         * Event types that are outcomes of a served answer when the event carries its `request_id`
         * (feedback type per event type).
         */
        outcomes: Type.Record(
          Type.String(),
          Type.Union([Type.Literal('impression'), Type.Literal('click'), Type.Literal('conversion')]),
          { default: { click: 'click', add_to_cart: 'click', purchase: 'conversion' } },
        ),
        /** How often the canary guard compares a canary's online metric with its control's. */
        guardCheckSeconds: Type.Number({ exclusiveMinimum: 0, default: 30 }),
      },
      { default: {}, additionalProperties: false },
    ),
    /** Next-best-offer (src/offers): offers are catalog items with an `offer` attribute. */
    offers: Type.Object(
      {
        /** Offers per answer when the request names no `k`. */
        defaultK: Type.Integer({ minimum: 1, default: 1 }),
        /** At most this many offer impressions per user in any 24 hours, over all offers (0: no global cap). */
        maxPerUserPerDay: Type.Integer({ minimum: 0, default: 5 }),
        /** Contact policy of offers whose `offer.policy` does not set a field (0 turns a rule off). */
        policy: Type.Object(
          {
            /** At most this many impressions of one offer per user per `periodDays`. */
            maxImpressions: Type.Integer({ minimum: 0, default: 3 }),
            periodDays: Type.Number({ exclusiveMinimum: 0, default: 7 }),
            /** After this many outcomes of `suppressOutcomes` on the offer, it is suppressed `suppressDays`. */
            suppressAfter: Type.Integer({ minimum: 0, default: 1 }),
            suppressOutcomes: Type.Array(Type.String({ minLength: 1 }), { default: ['purchase', 'dismiss'] }),
            suppressDays: Type.Number({ exclusiveMinimum: 0, default: 30 }),
          },
          { default: {}, additionalProperties: false },
        ),
        /** Business lever per category, multiplied into expected value (an offer's levers multiply). */
        categoryLevers: Type.Record(Type.String(), Type.Number({ minimum: 0 }), { default: {} }),
        /** Beta prior of every offer's conversion rate (default: a 10 % rate worth 10 exposures). */
        prior: Type.Object(
          {
            alpha: Type.Number({ exclusiveMinimum: 0, default: 1 }),
            beta: Type.Number({ exclusiveMinimum: 0, default: 9 }),
          },
          { default: {}, additionalProperties: false },
        ),
        /** Thompson sampling: the conversion rate is a draw from the posterior, not its mean. */
        explore: Type.Boolean({ default: true }),
        /** Served offers are appended to the event log as `impression` events (what the caps count). */
        recordImpressions: Type.Boolean({ default: true }),
        /** Event types that count as conversions of an offer. */
        conversionTypes: Type.Array(Type.String({ minLength: 1 }), { default: ['purchase'] }),
        /** Event types that count as exposures (trials) of an offer: served impressions and page views. */
        exposureTypes: Type.Array(Type.String({ minLength: 1 }), { default: ['impression', 'view'] }),
        /** Strength of the champion model's personal affinity on the probability (0: off). */
        affinityStrength: Type.Number({ minimum: 0, default: 0.5 }),
      },
      { default: {}, additionalProperties: false },
    ),
    monitoring: Type.Object(
      {
        /** How often the model's freshness and last training outcome are re-read from the registry. */
        freshnessCheckSeconds: Type.Number({ exclusiveMinimum: 0, default: 15 }),
        /** Newest events (and served scores) the live drift distributions are computed over. */
        driftWindow: Type.Integer({ minimum: 100, default: 10_000 }),
      },
      { default: {}, additionalProperties: false },
    ),
    logging: Type.Object(
      {
        level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
          { default: 'info' },
        ),
        /**
         * At `info`, the fraction of ordinary requests written as access lines (0–1); errors, 4xx other
         * than 404/429, 5xx other than 503 and slow requests are always written. At `debug`: every request.
         */
        accessSample: Type.Number({ minimum: 0, maximum: 1, default: 0.01 }),
        /** Requests slower than this many ms always get an access line (0: no slow rule). */
        slowRequestMs: Type.Number({ minimum: 0, default: 500 }),
        /** Every this many seconds, one summary line per route: count, status classes, p50/p99/max ms (0: none). */
        accessSummarySeconds: Type.Number({ minimum: 0, default: 60 }),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export type Config = Static<typeof ConfigSchema>;
