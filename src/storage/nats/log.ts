/**
 * The production change feed on NATS JetStream: `EventLog` and `ChangeLog` (ports.ts) over two streams
 * with file storage, created or updated at start (idempotently, so any number of processes may start at
 * once):
 *
 * - `<PREFIX>_EVENTS`, subjects `<prefix>.events.<user token>` (see `userToken`): one subject per user,
 *   so a GDPR erase purges exactly that user's events from the stream (`forgetUser`). Each event is
 *   published with its event id as `Nats-Msg-Id`, so JetStream itself recognizes a repeat within the
 *   duplicate window (`nats.duplicateWindowSeconds`); the store of record dedupes beyond it.
 * - `<PREFIX>_CHANGES`, subject `<prefix>.changes`: entity changes in order; a user's own records (`user`
 *   changes, holding their attributes) on `<prefix>.changes.user.<user token>`, so an erase can find them.
 * - `<PREFIX>_LEASES` (small, self-expiring): which process is the active consumer of each durable name
 *   (lease.ts).
 *
 * The stream sequence is the record's seq (`StoredEvent.seq`, `LogRecord.seq`), the same number the store
 * writer keeps in the store of record, so watermarks mean the same thing everywhere. Payloads are JSON.
 *
 * One connection serves both logs (`openNatsLogs`); it reconnects by itself forever, and consumers carry
 * on across reconnects and NATS restarts. Every NATS failure is CAIRN_UNAVAILABLE.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import type {
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  MsgRequest,
  PubAck,
  StreamConfig,
} from '@nats-io/jetstream';
import { connect, nanos, nuid } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import type { CairnEvent, StoredEvent } from '../../domain/types.ts';
import { CairnError } from '../../errors/errors.ts';
import { DEFAULT_CONSUME_BATCH } from '../polling-consumer.ts';
import type {
  AppendOutcome,
  BatchHandler,
  ChangeLog,
  ConsumeOptions,
  EntityChange,
  EventLog,
  LogConsumer,
  LogRecord,
} from '../ports.ts';
import type { ConsumerContext, NatsConsumerTimings } from './consumers.ts';
import { DurableConsumer, PrivateConsumer } from './consumers.ts';
import { NatsLease } from './lease.ts';
import type { NatsNames } from './shared.ts';
import {
  API,
  apiCode,
  consumerName,
  messageGone,
  messageId,
  natsNames,
  natsUnavailable,
  userToken,
} from './shared.ts';

export type { NatsConsumerTimings } from './consumers.ts';

/** Options of `openNatsLogs`; the first three are the `nats.*` config keys, so `{ ...config.nats }` fits. */
export interface NatsLogOptions {
  /** `nats://host:port`, or several comma-separated (a cluster); credentials may be in the URL. */
  url: string;
  /** Prefix of stream names (`<PREFIX>_EVENTS`) and, lower-cased, of subjects (`<prefix>.events.…`). */
  streamPrefix: string;
  /** How long JetStream recognizes a repeated event id by itself. */
  duplicateWindowSeconds: number;
  /** Connection name shown by the server's monitoring (default `cairn`). */
  name?: string;
  /** Give up the first connection after this long (ms, default 5000): CAIRN_UNAVAILABLE. */
  connectTimeoutMs?: number;
  /** Wait at most this long for a PubAck or a JetStream API answer (ms, default 5000). */
  requestTimeoutMs?: number;
  /** Stream replicas in a NATS cluster (default 1); only used when a stream is created. */
  replicas?: number;
  /**
   * Lease time of a durable consumer name (ms, default 15 000): how long a standby waits before taking
   * over from an active process that died. Every process of a deployment must use the same value (it is
   * the lease stream's `max_age`).
   */
  leaseTtlMs?: number;
  /** Retry, standby and ack-wait timings, and the error reporter, of every consumer started. */
  consumers?: NatsConsumerTimings;
}

/** Both logs on one connection. `close()` closes both and then the connection. */
export interface NatsLogs {
  readonly eventLog: NatsEventLog;
  readonly changeLog: NatsChangeLog;
  close(): Promise<void>;
}

/**
 * Connects once, makes sure the streams exist with the configured settings, and returns both logs.
 * Throws CAIRN_UNAVAILABLE when NATS cannot be reached (or has no JetStream), CAIRN_CONFIG_INVALID for a
 * bad URL or prefix, or a prefix whose subjects another deployment's streams already use.
 */
export async function openNatsLogs(options: NatsLogOptions): Promise<NatsLogs> {
  const names = natsNames(options.streamPrefix);
  const servers = parseServers(options.url);
  const requestTimeoutMs = options.requestTimeoutMs ?? 5000;
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers,
      name: options.name ?? 'cairn',
      timeout: options.connectTimeoutMs ?? 5000,
      // Never give up: an outage is waited out, and consumers resume by themselves afterwards.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      // Notice a silently dead server (half-open TCP) within a minute rather than the default four.
      pingInterval: 20_000,
      maxPingOut: 3,
    });
  } catch (e) {
    throw new CairnError(
      'CAIRN_UNAVAILABLE',
      `NATS unreachable (${servers.length} server${servers.length === 1 ? '' : 's'} in nats.url): ${
        e instanceof Error ? e.message : String(e)
      }`,
      undefined,
      { cause: e },
    );
  }
  try {
    const jsm = await jetstreamManager(nc, { timeout: requestTimeoutMs });
    const js = jetstream(nc, { timeout: requestTimeoutMs });
    const backend = new NatsBackend(nc, js, jsm, names, {
      requestTimeoutMs,
      duplicateWindowSeconds: options.duplicateWindowSeconds,
      replicas: options.replicas ?? 1,
      leaseTtlMs: options.leaseTtlMs ?? 15_000,
      consumers: options.consumers ?? {},
    });
    await backend.ensureStreams();
    const eventLog = new NatsEventLog(backend);
    const changeLog = new NatsChangeLog(backend);
    return {
      eventLog,
      changeLog,
      async close() {
        await Promise.all([eventLog.close(), changeLog.close()]);
      },
    };
  } catch (e) {
    await nc.close().catch(() => undefined);
    if (e instanceof CairnError) throw e;
    throw natsUnavailable('opening the JetStream logs', e);
  }
}

function parseServers(url: string): string[] {
  const servers = url
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (servers.length === 0 || servers.some((s) => !/^(nats|tls):\/\/[^\s/]+\/?$/i.test(s))) {
    const message = 'must be nats://host:port (or several, comma-separated)';
    throw new CairnError('CAIRN_CONFIG_INVALID', `invalid configuration: nats.url ${message}`, {
      fields: [{ field: 'nats.url', message }],
    });
  }
  return servers;
}

interface BackendSettings {
  requestTimeoutMs: number;
  duplicateWindowSeconds: number;
  replicas: number;
  leaseTtlMs: number;
  consumers: NatsConsumerTimings;
}

/** The connection, shared by both logs and closed (drained) when the last of them closes. */
class NatsBackend {
  private refs = 2;
  private closed = false;

  constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly names: NatsNames,
    readonly settings: BackendSettings,
  ) {}

  /** Server's largest message, less room for headers (msg id, expectations). */
  get maxPayload(): number {
    return (this.nc.info?.max_payload ?? 1024 * 1024) - 1024;
  }

  async ensureStreams(): Promise<void> {
    const { names, settings } = this;
    const common = {
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: settings.replicas,
    };
    await this.ensureStream({
      ...common,
      name: names.eventsStream,
      subjects: [`${names.eventSubjectPrefix}>`],
      duplicate_window: nanos(settings.duplicateWindowSeconds * 1000),
    });
    await this.ensureStream({
      ...common,
      name: names.changesStream,
      subjects: [names.changesSubject, `${names.changesSubject}.user.>`],
      duplicate_window: nanos(settings.duplicateWindowSeconds * 1000),
    });
    await this.ensureStream({
      ...common,
      name: names.leasesStream,
      subjects: [`${names.leaseSubjectPrefix}>`],
      max_msgs_per_subject: 1,
      max_age: nanos(settings.leaseTtlMs),
      // Must not exceed max_age; lease messages carry no message id anyway.
      duplicate_window: nanos(settings.leaseTtlMs),
    });
  }

  /**
   * Creates the stream, or brings the settings Cairn owns up to date on an existing one (limits an
   * operator set, such as `max_age` or `max_bytes` on the event stream, are kept). Adding a stream that
   * exists with the same settings is a no-op on the server, so concurrent starts are safe.
   */
  private async ensureStream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    const { jsm } = this;
    try {
      await jsm.streams.add(config);
      return;
    } catch (e) {
      const code = apiCode(e);
      if (code === API.SUBJECT_OVERLAP) {
        const message = `subjects of stream ${config.name} (${String(config.subjects)}) are already used by another stream; choose another prefix`;
        throw new CairnError('CAIRN_CONFIG_INVALID', `invalid configuration: nats.streamPrefix ${message}`, {
          fields: [{ field: 'nats.streamPrefix', message }],
        });
      }
      if (code !== API.STREAM_NAME_IN_USE) throw natsUnavailable(`creating stream ${config.name}`, e);
    }
    try {
      const current = (await jsm.streams.info(config.name)).config;
      const {
        name: _name,
        storage,
        retention: _retention,
        discard: _discard,
        num_replicas: _r,
        ...owned
      } = config;
      if (storage !== undefined && current.storage !== storage) {
        const message = `stream ${config.name} exists with ${current.storage} storage, Cairn needs ${storage}`;
        throw new CairnError('CAIRN_CONFIG_INVALID', `invalid configuration: nats.streamPrefix ${message}`, {
          fields: [{ field: 'nats.streamPrefix', message }],
        });
      }
      await jsm.streams.update(config.name, { ...current, ...owned });
    } catch (e) {
      throw natsUnavailable(`updating stream ${config.name}`, e);
    }
  }

  /** Highest seq of a stream (0 when nothing was ever stored). */
  async head(stream: string): Promise<number> {
    this.check();
    try {
      return (await this.jsm.streams.info(stream)).state.last_seq;
    } catch (e) {
      throw natsUnavailable(`reading the head of ${stream}`, e);
    }
  }

  /** The first seq stored after `seq` (a direct lookup, no consumer), or null when there is none. */
  async nextAfter(stream: string, seq: number): Promise<number | null> {
    this.check();
    const { names } = this;
    // `>` is every subject of the stream (the changes stream has two subject trees).
    const filter = stream === names.eventsStream ? `${names.eventSubjectPrefix}>` : '>';
    try {
      // STREAM.MSG.GET takes `next_by_subj` since NATS 2.9 (answered by the stream leader, so never stale);
      // the client types offer it only on the direct-get API, which needs `allow_direct` and may read
      // from a lagging replica.
      const request = { seq: seq + 1, next_by_subj: filter } as unknown as MsgRequest;
      const m = await this.jsm.streams.getMessage(stream, request);
      return m ? m.seq : null;
    } catch (e) {
      throw natsUnavailable(`looking up ${stream} after ${seq}`, e);
    }
  }

  /**
   * Messages with seq > `after`, ascending, at most `limit`, through a short-lived ephemeral consumer
   * (NATS 2.9 has no batched direct get). Its `num_pending` says how many exist, so the fetch ends as
   * soon as they arrived instead of waiting for its expiry; purged seqs are simply absent.
   */
  async read<R>(stream: string, after: number, limit: number, decode: (m: JsMsg) => R): Promise<R[]> {
    this.check();
    const start = Math.max(0, Math.floor(after));
    const max = Math.floor(limit);
    if (!(max > 0)) return [];
    const head = await this.head(stream);
    if (start >= head) return [];
    let name: string | null = null;
    try {
      const info = await this.jsm.consumers.add(stream, {
        ...(start > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start + 1 } : {}),
        ack_policy: AckPolicy.None,
        inactive_threshold: nanos(60_000),
        mem_storage: true,
        num_replicas: 1,
      });
      name = info.name;
      const want = Math.min(max, info.num_pending);
      const out: R[] = [];
      if (want === 0) return out;
      const messages = await this.js.consumers
        .getConsumerFromInfo(info)
        .fetch({ max_messages: want, expires: Math.max(1000, this.settings.requestTimeoutMs) });
      for await (const m of messages) {
        out.push(decode(m));
        // `pending` is what the consumer still has after this message: 0 means the range is complete.
        if (out.length >= want || m.info.pending === 0) break;
      }
      return out;
    } catch (e) {
      throw natsUnavailable(`reading ${stream} after ${start}`, e);
    } finally {
      // No need to wait: an abandoned one goes away by itself after its inactivity threshold.
      if (name !== null) this.jsm.consumers.delete(stream, name).catch(() => undefined);
    }
  }

  /**
   * Deletes every message on `subject` with JetStream's secure erase (the bytes are overwritten in the
   * stream's files; a purge would only unlink them there). Seqs are listed by a filtered, headers-only
   * ephemeral consumer, then erased pipelined.
   */
  async eraseSubject(stream: string, subject: string): Promise<void> {
    this.check();
    const seqs: number[] = [];
    let name: string | null = null;
    try {
      const info = await this.jsm.consumers.add(stream, {
        filter_subject: subject,
        headers_only: true,
        ack_policy: AckPolicy.None,
        inactive_threshold: nanos(60_000),
        mem_storage: true,
        num_replicas: 1,
      });
      name = info.name;
      if (info.num_pending > 0) {
        const messages = await this.js.consumers
          .getConsumerFromInfo(info)
          .fetch({ max_messages: info.num_pending, expires: Math.max(1000, this.settings.requestTimeoutMs) });
        for await (const m of messages) {
          seqs.push(m.seq);
          if (m.info.pending === 0) break;
        }
      }
    } catch (e) {
      throw natsUnavailable(`listing ${subject} in ${stream}`, e);
    } finally {
      if (name !== null) this.jsm.consumers.delete(stream, name).catch(() => undefined);
    }
    await this.eraseMessages(stream, seqs);
  }

  /** Securely erases messages by seq (pipelined); seqs already gone are ignored. */
  async eraseMessages(stream: string, seqs: readonly number[]): Promise<void> {
    this.check();
    for (let from = 0; from < seqs.length; from += ERASE_WINDOW) {
      const window = seqs.slice(from, from + ERASE_WINDOW);
      try {
        await Promise.all(
          window.map((seq) =>
            this.jsm.streams.deleteMessage(stream, seq, true).catch((e: unknown) => {
              if (!messageGone(e)) throw e;
            }),
          ),
        );
      } catch (e) {
        throw natsUnavailable(`erasing messages of ${stream}`, e);
      }
    }
  }

  /** Lowest acknowledged position among the stream's durable consumers (null when it has none). */
  async durableFloor(stream: string): Promise<number | null> {
    this.check();
    let floor: number | null = null;
    try {
      for await (const c of this.jsm.consumers.list(stream)) {
        if (!c.config.durable_name) continue;
        floor = Math.min(floor ?? Infinity, c.ack_floor.stream_seq);
      }
    } catch (e) {
      throw natsUnavailable(`listing the consumers of ${stream}`, e);
    }
    return floor;
  }

  /** Publishes and waits for the PubAck (the message is then durable in the stream). */
  async publish(subject: string, payload: Uint8Array, msgID: string): Promise<PubAck> {
    return this.js.publish(subject, payload, { msgID, timeout: this.settings.requestTimeoutMs });
  }

  /** Per-consumer context shared by both logs. */
  context<R>(
    stream: string,
    label: string,
    decode: (m: JsMsg) => R,
    handler: BatchHandler<R>,
    batchSize: number,
    onStopped: () => void,
  ): ConsumerContext<R> {
    const c = this.settings.consumers;
    return {
      nc: this.nc,
      js: this.js,
      jsm: this.jsm,
      stream,
      label,
      decode,
      head: () => this.head(stream),
      nextAfter: (seq) => this.nextAfter(stream, seq),
      handler,
      batchSize,
      timings: {
        retryBaseMs: c.retryBaseMs ?? 250,
        retryMaxMs: c.retryMaxMs ?? 30_000,
        lockRetryMs: c.lockRetryMs ?? 1000,
        ackWaitMs: c.ackWaitMs ?? 10_000,
        onError: c.onError,
      },
      requestTimeoutMs: this.settings.requestTimeoutMs,
      onStopped,
    };
  }

  lease(durable: string): NatsLease {
    return new NatsLease({
      js: this.js,
      jsm: this.jsm,
      stream: this.names.leasesStream,
      subject: `${this.names.leaseSubjectPrefix}${durable}`,
      ttlMs: this.settings.leaseTtlMs,
      timeoutMs: this.settings.requestTimeoutMs,
    });
  }

  /** Throws CAIRN_UNAVAILABLE once the connection is closed. */
  check(): void {
    if (this.closed || this.nc.isClosed()) {
      throw new CairnError('CAIRN_UNAVAILABLE', 'NATS JetStream log is closed');
    }
  }

  /** One log is done with the connection; the last one drains it (in-flight publishes complete). */
  async release(): Promise<void> {
    if (--this.refs > 0) return;
    this.closed = true;
    if (this.nc.isClosed()) return;
    // Draining lets in-flight publishes and acks finish; while NATS is unreachable it could wait for a
    // reconnect that never comes, so it is cut short and the connection closed outright.
    let timer: NodeJS.Timeout | undefined;
    const cutShort = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.settings.requestTimeoutMs);
    });
    const drained = this.nc.drain().then(
      () => 'drained' as const,
      () => 'failed' as const,
    );
    const outcome = await Promise.race([drained, cutShort]);
    clearTimeout(timer);
    if (outcome !== 'drained') await this.nc.close().catch(() => undefined);
  }
}

/** Consumers started by one log, so that closing the log stops them all. */
class ConsumerSet {
  private readonly live = new Set<LogConsumer>();

  start<R>(
    backend: NatsBackend,
    stream: string,
    what: string,
    options: ConsumeOptions,
    decode: (m: JsMsg) => R,
    handler: BatchHandler<R>,
  ): LogConsumer {
    backend.check();
    const batchSize = Math.max(1, Math.floor(options.batchSize ?? DEFAULT_CONSUME_BATCH));
    let consumer: LogConsumer | null = null;
    const onStopped = () => {
      if (consumer) this.live.delete(consumer);
    };
    if (options.durable !== undefined) {
      const name = consumerName(options.durable);
      const label = `NATS ${what} durable:${options.durable}`;
      consumer = new DurableConsumer<R>(
        backend.context(stream, label, decode, handler, batchSize, onStopped),
        name,
        backend.lease(`${stream}.${name}`),
      );
    } else {
      const after = Math.max(0, Math.floor(options.after ?? 0));
      const label = `NATS ${what} private`;
      consumer = new PrivateConsumer<R>(
        backend.context(stream, label, decode, handler, batchSize, onStopped),
        after,
      );
    }
    this.live.add(consumer);
    return consumer;
  }

  async closeAll(): Promise<void> {
    const all = [...this.live];
    this.live.clear();
    await Promise.all(all.map((c) => c.close()));
  }
}

/** The fields of an event as published: exactly a `CairnEvent` (a `seq` passed in is not carried). */
function eventPayload(e: CairnEvent): CairnEvent {
  return {
    eventId: e.eventId,
    userId: e.userId,
    itemId: e.itemId,
    type: e.type,
    value: e.value,
    timestamp: e.timestamp,
    context: e.context,
  };
}

function decodeEvent(m: JsMsg): StoredEvent {
  const e = m.json<CairnEvent>();
  if (
    typeof e !== 'object' ||
    e === null ||
    typeof e.eventId !== 'string' ||
    typeof e.userId !== 'string' ||
    typeof e.itemId !== 'string' ||
    typeof e.type !== 'string' ||
    typeof e.timestamp !== 'number'
  ) {
    throw new CairnError('CAIRN_INTERNAL', `message ${m.seq} of ${m.info.stream} is not a Cairn event`);
  }
  return { seq: m.seq, ...eventPayload(e) };
}

function decodeChange(m: JsMsg): LogRecord<EntityChange> {
  const value = m.json<EntityChange>();
  if (typeof value !== 'object' || value === null || typeof value.kind !== 'string') {
    throw new CairnError('CAIRN_INTERNAL', `message ${m.seq} of ${m.info.stream} is not a Cairn change`);
  }
  return { seq: m.seq, value };
}

/** Publishes in flight at once by one `append` (bounds memory for very large batches). */
const PUBLISH_WINDOW = 4096;

/** Secure-erase requests in flight at once. */
const ERASE_WINDOW = 256;

/** The behaviour-event log on the `<PREFIX>_EVENTS` stream (made by `openNatsLogs`). */
export class NatsEventLog implements EventLog {
  readonly kind = 'nats';
  private readonly consumers = new ConsumerSet();
  private closed = false;

  constructor(private readonly backend: NatsBackend) {}

  /**
   * Publishes every event (its id as `Nats-Msg-Id`), pipelined, and resolves once every PubAck arrived:
   * then each event is durable in the stream and safe to acknowledge to the client. A PubAck marked
   * duplicate (the id was seen within the duplicate window) is a `duplicate`; so is a repeat of an id
   * earlier in the same batch, which is not published at all.
   *
   * Unlike the SQL logs, a NATS batch is NOT all or nothing: when a publish fails or times out the call
   * rejects with CAIRN_UNAVAILABLE, possibly after some events were stored. It is retry-safe: a retry of
   * the same batch gets `duplicate` for those (msg ids), and the store writer dedupes by event id beyond
   * the window. An event too large for the server is CAIRN_PAYLOAD_TOO_LARGE, before anything is sent.
   */
  async append(events: CairnEvent[]): Promise<AppendOutcome[]> {
    this.backend.check();
    const outcomes: AppendOutcome[] = new Array<AppendOutcome>(events.length);
    const first = new Set<string>();
    const batch: { index: number; subject: string; payload: Uint8Array; msgID: string }[] = [];
    const max = this.backend.maxPayload;
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      if (first.has(e.eventId)) {
        outcomes[i] = 'duplicate';
        continue;
      }
      first.add(e.eventId);
      const payload = Buffer.from(JSON.stringify(eventPayload(e)), 'utf8');
      if (payload.length > max) {
        throw new CairnError(
          'CAIRN_PAYLOAD_TOO_LARGE',
          `event ${e.eventId} is ${payload.length} bytes; the NATS server accepts at most ${max}`,
        );
      }
      batch.push({
        index: i,
        subject: `${this.backend.names.eventSubjectPrefix}${userToken(e.userId)}`,
        payload,
        msgID: messageId(e.eventId),
      });
    }
    for (let from = 0; from < batch.length; from += PUBLISH_WINDOW) {
      const window = batch.slice(from, from + PUBLISH_WINDOW);
      // All publishes of a window are on the wire before the first PubAck is awaited.
      const acks = await Promise.allSettled(
        window.map((p) => this.backend.publish(p.subject, p.payload, p.msgID)),
      );
      const failed = acks.find((a): a is PromiseRejectedResult => a.status === 'rejected');
      if (failed) {
        const stored = acks.filter((a) => a.status === 'fulfilled').length + from;
        throw natsUnavailable(
          `appending ${batch.length} events (${stored} acknowledged, retry the batch)`,
          failed.reason,
        );
      }
      window.forEach((p, k) => {
        const ack = (acks[k] as PromiseFulfilledResult<PubAck>).value;
        outcomes[p.index] = ack.duplicate ? 'duplicate' : 'inserted';
      });
    }
    return outcomes;
  }

  read(after: number, limit: number): Promise<StoredEvent[]> {
    return this.backend.read(this.backend.names.eventsStream, after, limit, decodeEvent);
  }

  head(): Promise<number> {
    return this.backend.head(this.backend.names.eventsStream);
  }

  /**
   * A durable consumer (`options.durable`): shared by every process using the name, one of them active
   * at a time (in log order), the others standing by. Otherwise a private ordered consumer from
   * `options.after`. See consumers.ts.
   */
  consume(options: ConsumeOptions, handler: BatchHandler<StoredEvent>): LogConsumer {
    return this.consumers.start(
      this.backend,
      this.backend.names.eventsStream,
      'events',
      options,
      decodeEvent,
      handler,
    );
  }

  /**
   * Erases the user's subject from the stream: their events are gone from the log itself, and their
   * bytes from the server's files (a subject purge would leave them in the message blocks).
   */
  async forgetUser(userId: string): Promise<void> {
    const { eventsStream, eventSubjectPrefix } = this.backend.names;
    await this.backend.eraseSubject(eventsStream, `${eventSubjectPrefix}${userToken(userId)}`);
  }

  /** Stops this log's consumers, then lets go of the connection (drained once both logs closed). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.consumers.closeAll();
    await this.backend.release();
  }
}

/** The entity-change log on the `<PREFIX>_CHANGES` stream (made by `openNatsLogs`). */
export class NatsChangeLog implements ChangeLog {
  readonly kind = 'nats';
  private readonly consumers = new ConsumerSet();
  private closed = false;

  constructor(private readonly backend: NatsBackend) {}

  /**
   * Publishes the changes one after the other (a change waits for the previous PubAck), so they are
   * stored in the order given even when the connection drops mid-call; each travels with a fresh message
   * id, and a publish that times out is sent once more with the same id (no duplicate if the first one
   * was stored after all). A change too large for one NATS message (a big catalog batch, an erase of a
   * user with many events) is split into several records of the same kind, whose effect together is the
   * original's; its returned seq is the last one. Rejects with CAIRN_UNAVAILABLE when NATS cannot take
   * the changes (those before the failure stay stored).
   */
  async append(changes: EntityChange[]): Promise<number[]> {
    this.backend.check();
    const max = this.backend.maxPayload;
    // Split (and size-check) everything before publishing anything.
    const parts = changes.map((c) => splitChange(c, max));
    const seqs: number[] = [];
    for (let i = 0; i < parts.length; i++) {
      const subject = this.subjectOf(changes[i]);
      let seq = 0;
      for (const payload of parts[i]) seq = await this.publishOne(subject, payload);
      seqs.push(seq);
    }
    return seqs;
  }

  /** A user's own records go on their subject (see `forgetUser`); every other change on the log's. */
  private subjectOf(change: EntityChange): string {
    const { changesSubject } = this.backend.names;
    return change.kind === 'user' ? `${changesSubject}.user.${userToken(change.user.id)}` : changesSubject;
  }

  /** Erases the user's `user` records (their subject) from the stream and its files. */
  async forgetUser(userId: string): Promise<void> {
    const { changesStream, changesSubject } = this.backend.names;
    await this.backend.eraseSubject(changesStream, `${changesSubject}.user.${userToken(userId)}`);
  }

  remove(seqs: number[]): Promise<void> {
    return this.backend.eraseMessages(this.backend.names.changesStream, seqs);
  }

  durableFloor(): Promise<number | null> {
    return this.backend.durableFloor(this.backend.names.changesStream);
  }

  private async publishOne(subject: string, payload: Uint8Array): Promise<number> {
    const msgID = nuid.next();
    try {
      return (await this.backend.publish(subject, payload, msgID)).seq;
    } catch (first) {
      if (apiCode(first) !== undefined) throw natsUnavailable('appending a change', first);
      try {
        return (await this.backend.publish(subject, payload, msgID)).seq;
      } catch (e) {
        throw natsUnavailable('appending a change', e);
      }
    }
  }

  read(after: number, limit: number): Promise<LogRecord<EntityChange>[]> {
    return this.backend.read(this.backend.names.changesStream, after, limit, decodeChange);
  }

  head(): Promise<number> {
    return this.backend.head(this.backend.names.changesStream);
  }

  /** See `NatsEventLog.consume`. */
  consume(options: ConsumeOptions, handler: BatchHandler<LogRecord<EntityChange>>): LogConsumer {
    return this.consumers.start(
      this.backend,
      this.backend.names.changesStream,
      'changes',
      options,
      decodeChange,
      handler,
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.consumers.closeAll();
    await this.backend.release();
  }
}

const encode = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value), 'utf8');

/**
 * One change as one or more payloads of at most `max` bytes. Only lists split: `items` by items, `erase`
 * by events (each part names the user; applying the parts drops the user each time and subtracts each
 * event once, which is what the whole erase does).
 */
export function splitChange(change: EntityChange, max: number): Uint8Array[] {
  const whole = encode(change);
  if (whole.length <= max) return [whole];
  const tooLarge = (what: string, bytes: number) =>
    new CairnError(
      'CAIRN_PAYLOAD_TOO_LARGE',
      `${what} is ${bytes} bytes; the NATS server accepts at most ${max} per message`,
    );
  if (change.kind === 'items') {
    return chunk(
      change.items,
      max,
      (items) => ({ kind: 'items', items }),
      (item, bytes) => tooLarge(`item ${item.id}`, bytes),
    );
  }
  if (change.kind === 'erase') {
    const { userId } = change;
    return chunk(
      change.events,
      max,
      (events) => ({ kind: 'erase', userId, events }),
      (_e, bytes) => tooLarge(`an erase of user ${userId}`, bytes),
    );
  }
  throw tooLarge(`a ${change.kind} change`, whole.length);
}

/** Greedy split of `list` into payloads of at most `max` bytes each. */
function chunk<T>(
  list: readonly T[],
  max: number,
  wrap: (part: T[]) => EntityChange,
  tooLarge: (element: T, bytes: number) => CairnError,
): Uint8Array[] {
  const envelope = encode(wrap([])).length;
  const out: Uint8Array[] = [];
  let part: T[] = [];
  let size = envelope;
  for (const element of list) {
    // +1 for the comma between array elements.
    const bytes = Buffer.byteLength(JSON.stringify(element), 'utf8') + 1;
    if (envelope + bytes > max) throw tooLarge(element, envelope + bytes);
    if (size + bytes > max && part.length > 0) {
      out.push(encode(wrap(part)));
      part = [];
      size = envelope;
    }
    part.push(element);
    size += bytes;
  }
  if (part.length > 0) out.push(encode(wrap(part)));
  return out;
}
