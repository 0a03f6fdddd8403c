/**
 * The two `LogConsumer`s of the JetStream logs.
 *
 * - `DurableConsumer` (ConsumeOptions.durable): a durable pull consumer (AckExplicit, DeliverAll,
 *   `max_ack_pending` = batch size) whose position lives in JetStream. Every process consuming under one
 *   name shares it; a lease (lease.ts) makes exactly one of them the active puller at a time and the others
 *   stand by, so the name's records are handled once each, in log order, and a standby takes over when the
 *   active process stops (at once) or dies (after the lease ages out).
 * - `PrivateConsumer`: an ordered consumer (ephemeral, no acks) starting after `after`; the client library
 *   recreates it at the right sequence after a reconnect or a NATS restart.
 *
 * Shared guarantees, matching `LogConsumer` in ports.ts and the SQL logs' consumer (polling-consumer.ts):
 * at least once, in log order; a batch whose handler rejects is handed over again, exactly the same
 * records, after a capped exponential backoff, and nothing later is handled before it; NATS failures never
 * escape (they are reported to `onError` and retried), so a consumer never crashes its process and picks
 * up where it was once NATS is back.
 */
import { AckPolicy, DeliverPolicy, ReplayPolicy } from '@nats-io/jetstream';
import type {
  Consumer,
  ConsumerInfo,
  ConsumerMessages,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { CairnError } from '../../errors/errors.ts';
import { ConsumerPosition, retryDelayMs, type ConsumerErrorInfo } from '../polling-consumer.ts';
import type { BatchHandler, LogConsumer } from '../ports.ts';
import type { NatsLease } from './lease.ts';
import { API, apiCode, natsUnavailable } from './shared.ts';

/** Knobs of every consumer a JetStream log starts (the defaults suit production). */
export interface NatsConsumerTimings {
  /** First retry delay after a failure (ms, default 250); doubles per consecutive failure. */
  retryBaseMs?: number;
  /** Cap of the retry delay (ms, default 30 000). */
  retryMaxMs?: number;
  /** How often a standby durable consumer tries to take the name's lease (ms, default 1000). */
  lockRetryMs?: number;
  /**
   * JetStream `ack_wait` of durable consumers (ms, default 10 000): how long records handed to a process
   * that died stay invisible before they are delivered again, and how long a durable waits after a NATS
   * crash (a killed server can forget acknowledgements it had not flushed yet; their records come back
   * after this and are only acknowledged again). A live process keeps the records it holds alive (`+WPI`
   * every third of it) however long its handler or its retries take, so it need not cover a slow handler.
   */
  ackWaitMs?: number;
  /** Told about every failure (handler rejection, NATS unreachable, lease lost). Must not throw. */
  onError?: (error: unknown, info: ConsumerErrorInfo) => void;
}

type Stage = ConsumerErrorInfo['stage'];

/** What a log hands to each consumer it starts. */
export interface ConsumerContext<R> {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  stream: string;
  /** Used in error reports, e.g. `NATS events durable:store-writer`. */
  label: string;
  /** The record carried by a message; throws on a payload Cairn did not write. */
  decode(msg: JsMsg): R;
  /** Highest seq of the stream (0 when empty). */
  head(): Promise<number>;
  /** The first seq stored after `seq`, or null when there is none. */
  nextAfter(seq: number): Promise<number | null>;
  handler: BatchHandler<R>;
  batchSize: number;
  timings: Required<Omit<NatsConsumerTimings, 'onError'>> & Pick<NatsConsumerTimings, 'onError'>;
  /** PubAck / API / ack confirmation timeout (ms). */
  requestTimeoutMs: number;
  /** Called once the consumer has stopped (the owning log forgets it). */
  onStopped(): void;
}

/**
 * The ack subject of a delivered message. `JsMsg.ack()` and friends are one-shot (a second `ack()` after
 * an unconfirmed one is silently dropped), but a commit must be retryable until the server confirms it,
 * so acks are published on the subject directly. The client's message class exposes it as `reply`.
 */
function replyOf(m: JsMsg): string {
  const reply = (m as JsMsg & { reply?: unknown }).reply;
  if (typeof reply !== 'string' || reply === '') {
    throw new CairnError('CAIRN_INTERNAL', `JetStream message ${m.seq} carries no ack subject`);
  }
  return reply;
}

/** While someone waits in `caughtUp` beyond the position, how often an idle consumer re-checks (ms). */
const RECONCILE_MS = 250;
/** Idle wait without waiters; new messages and `close` cut it short (ms). */
const IDLE_MS = 5000;
/**
 * Longest wait for a batch to fill. Messages arrive one by one; a batch is handed over as soon as it is
 * full or the newest message says nothing is left behind it (`info.pending === 0`), so this only bounds
 * the wait when more are announced but do not come.
 */
const GATHER_MS = 50;
/**
 * Records handed back (lease lost, closing) are redelivered after this delay rather than at once: the
 * server may still hold pull requests of the subscription just closed and, for a moment, deliver to them,
 * where nobody listens (the records would then wait out the whole ack wait).
 */
const HAND_BACK_DELAY_MS = 500;
const HAND_BACK = `-NAK ${JSON.stringify({ delay: nanos(HAND_BACK_DELAY_MS) })}`;
/** Pull request lifetime: the client re-pulls before it runs out, and heartbeats detect a dead server. */
const PULL_EXPIRES_MS = 30_000;

/** Position, waiters, sleeping and failure reporting, common to both consumers. */
abstract class BaseConsumer<R> implements LogConsumer {
  private readonly at: ConsumerPosition;
  protected closing = false;
  private failures = 0;
  private sleeper: { timer: NodeJS.Timeout; resolve: () => void; wakeable: boolean } | null = null;
  /** Bumped by every wake-up, so one arriving while the loop is busy is not lost. */
  private signals = 0;
  protected done: Promise<void> = Promise.resolve();
  /** When the current batch started gathering (0: not gathering). */
  private gatherSince = 0;

  constructor(
    protected readonly ctx: ConsumerContext<R>,
    start: number,
  ) {
    this.at = new ConsumerPosition(ctx.label, start);
  }

  /** Highest seq handled (the consumer's position). */
  protected get pos(): number {
    return this.at.value;
  }

  /** Starts the loop; called by subclasses at the end of their constructor. */
  protected begin(): void {
    this.done = this.run();
  }

  get position(): number {
    return this.at.value;
  }

  caughtUp(seq: number): Promise<void> {
    if (this.at.value >= seq) return Promise.resolve();
    const p = this.at.wait(seq, this.closing);
    // An idle loop sleeps long; let it check (`reconcile`) whether the log has only gaps up to `seq`.
    this.wake();
    return p;
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.interrupt(true);
    }
    return this.done;
  }

  private async run(): Promise<void> {
    try {
      while (!this.closing) await this.step();
    } finally {
      try {
        await this.shutdown();
      } finally {
        this.at.close();
        this.ctx.onStopped();
      }
    }
  }

  /** One turn of the loop; must not throw (failures go through `fail`). */
  protected abstract step(): Promise<void>;
  /** Stops pulling, hands back what is held, releases what is owned. Must not throw. */
  protected abstract shutdown(): Promise<void>;
  /** Nothing received is waiting for, or in, the handler. */
  protected abstract idleNow(): boolean;
  /**
   * Whether records this process did not handle are handled all the same (a durable name's active
   * process handled them): then the name's position is the head. May throw when NATS cannot be asked.
   */
  protected abstract handledElsewhere(): Promise<boolean>;

  protected advance(seq: number): void {
    this.at.advance(seq);
  }

  /**
   * Whether `count` available messages, `newest` the last of them, make a batch now: a full batch, or
   * nothing more in the stream behind them, or waited `GATHER_MS` for the rest. Returns the ms still to
   * wait otherwise.
   */
  protected gathered(count: number, newest: JsMsg): number {
    if (count >= this.ctx.batchSize || newest.info.pending === 0) {
      this.gatherSince = 0;
      return 0;
    }
    const now = performance.now();
    if (this.gatherSince === 0) this.gatherSince = now;
    const left = GATHER_MS - (now - this.gatherSince);
    if (left <= 0) {
      this.gatherSince = 0;
      return 0;
    }
    return Math.ceil(left);
  }

  /** Whether someone waits for a seq beyond the position. */
  protected get awaited(): boolean {
    return this.at.awaited;
  }

  /**
   * Records can be missing from the log (a user's events purged by `forgetUser`), so a consumer may
   * never be handed the seq a caller waits for. When no record is stored between the position and the
   * head (read first), every seq up to that head is behind the consumer: moving the position there keeps
   * `caughtUp(head())` from waiting forever on a gap. Only runs while someone waits and nothing is in hand.
   */
  protected async reconcile(): Promise<void> {
    if (!this.awaited || !this.idleNow()) return;
    try {
      const head = await this.ctx.head();
      if (head <= this.pos) return;
      const from = this.pos;
      const next = await this.ctx.nextAfter(from);
      if (this.pos !== from || !this.idleNow()) return;
      if (next === null || next > head || (await this.handledElsewhere())) this.advance(head);
    } catch {
      // Best effort: the next idle turn tries again; real failures surface through the main loop.
    }
  }

  /** Counts a failure, reports it and backs off (only `close` cuts the backoff short). */
  protected async fail(stage: Stage, error: unknown): Promise<void> {
    this.failures++;
    const { retryBaseMs, retryMaxMs } = this.ctx.timings;
    const base = retryDelayMs(this.failures, retryBaseMs, retryMaxMs);
    // ±20% so replicas that failed together do not retry in lockstep.
    const retryInMs = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.report(stage, error, retryInMs);
    await this.sleep(retryInMs, false);
  }

  protected succeeded(): void {
    this.failures = 0;
  }

  protected report(stage: Stage, error: unknown, retryInMs = 0): void {
    try {
      this.ctx.timings.onError?.(error, {
        consumer: this.ctx.label,
        stage,
        failures: Math.max(1, this.failures),
        retryInMs,
      });
    } catch {
      // A throwing reporter must not stop the consumer.
    }
  }

  /** Waits `ms`, or less when closed (or woken by new messages or a waiter, if `wakeable`). */
  protected sleep(ms: number, wakeable: boolean): Promise<void> {
    if (this.closing) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.sleeper = null;
        resolve();
      }, ms);
      this.sleeper = { timer, resolve, wakeable };
    });
  }

  /** Idles until something happens, unless something already happened since `seen`. */
  protected async idle(seen: number, ms: number): Promise<void> {
    if (this.signals !== seen) return;
    await this.sleep(ms, true);
  }

  protected get signalCount(): number {
    return this.signals;
  }

  protected wake(): void {
    this.signals++;
    this.interrupt(false);
  }

  private interrupt(force: boolean): void {
    const s = this.sleeper;
    if (s && (force || s.wakeable)) {
      clearTimeout(s.timer);
      this.sleeper = null;
      s.resolve();
    }
  }

  /** Decodes a batch; a payload Cairn did not write fails the batch (it is retried, never skipped). */
  protected decodeAll(msgs: readonly JsMsg[]): R[] {
    return msgs.map((m) => this.ctx.decode(m));
  }
}

/* ------------------------------------------------------------------------------------------------ */

/**
 * A durable consumer: see the file comment. The active process pulls into `held`, hands the lowest
 * records to the handler once no other process still owes an earlier record (the ordering guard), and
 * acknowledges with a confirmed ack (`+ACK` as a request) so the next guard check sees it.
 */
export class DurableConsumer<R> extends BaseConsumer<R> {
  /** Delivered to this process, not yet handled, by stream seq. */
  private readonly held = new Map<number, JsMsg>();
  /** Handled, acknowledgement not confirmed yet: stream seq → ack subject. */
  private readonly unacked = new Map<number, string>();
  /** Seqs of the batch whose handler failed: exactly these are handed over again. */
  private retry: number[] | null = null;
  private active = false;
  private messages: ConsumerMessages | null = null;
  private pump: Promise<void> | null = null;
  private pumpEnded = false;
  /** Set when the server says the durable is gone: it is created again before pulling resumes. */
  private lostConsumer = false;
  private timers: NodeJS.Timeout[] = [];
  /** The lease epoch this activation belongs to (see `NatsLease.epoch`). */
  private epoch = 0;
  /** Successive ordering-guard waits, to back off from polling consumer info. */
  private guardWaits = 0;

  constructor(
    ctx: ConsumerContext<R>,
    private readonly name: string,
    private readonly lease: NatsLease,
  ) {
    super(ctx, 0);
    this.begin();
  }

  protected async step(): Promise<void> {
    if (!this.lease.held) {
      let acquired: boolean;
      try {
        acquired = await this.lease.acquire();
      } catch (e) {
        // NATS unreachable: hand nothing to the handler, but keep what is held and the subscription. If
        // the lease turns out to have survived the outage, work simply resumes; nobody could take the
        // name over meanwhile without our lease message aging out first (see below).
        return this.fail('lock', e);
      }
      if (!acquired) {
        // Another process is (now) the active consumer of this name: stand by.
        if (this.active) await this.deactivate('lease lost');
        const seen = this.signalCount;
        await this.reconcile();
        return this.idle(seen, this.ctx.timings.lockRetryMs);
      }
      if (this.active && this.lease.epoch !== this.epoch) {
        // Our lease message aged out before we got it back: another process may have been active in
        // between, so what we hold may be stale. Start over from the server's state.
        await this.deactivate('lease interrupted');
      }
      if (!this.active) {
        try {
          await this.activate();
        } catch (e) {
          await this.deactivate('activation failed');
          await this.lease.release();
          return this.fail('read', e);
        }
        this.epoch = this.lease.epoch;
      }
      this.succeeded();
    }
    if (this.lostConsumer || this.pumpEnded) {
      try {
        await this.restartPulling();
      } catch (e) {
        return this.fail('read', e);
      }
    }
    if (this.unacked.size > 0 && !(await this.commit())) return;

    const seen = this.signalCount;
    let seqs = this.retry;
    if (seqs === null) {
      if (this.held.size === 0) {
        await this.reconcile();
        return this.idle(seen, this.awaited ? RECONCILE_MS : IDLE_MS);
      }
      const all = [...this.held.keys()].sort((a, b) => a - b);
      const wait = this.gathered(all.length, this.held.get(all[all.length - 1])!);
      if (wait > 0) return this.idle(seen, wait);
      seqs = all.length > this.ctx.batchSize ? all.slice(0, this.ctx.batchSize) : all;
    }

    // Ordering guard: every record this durable has delivered and not had acknowledged must be ours.
    // Anything else outstanding is on its way to us, or was handed to a previous active process that
    // stopped or died (it comes back to us after its ack wait), and precedes what we hold: wait for it.
    let info: ConsumerInfo;
    try {
      info = await this.ctx.jsm.consumers.info(this.ctx.stream, this.name);
    } catch (e) {
      if (apiCode(e) === API.CONSUMER_NOT_FOUND) this.lostConsumer = true;
      return this.fail('read', e);
    }
    if (info.num_ack_pending > this.held.size + this.unacked.size) {
      this.guardWaits++;
      return this.idle(seen, Math.min(1000, 10 * 2 ** Math.min(this.guardWaits, 7)));
    }
    this.guardWaits = 0;

    const msgs = seqs.map((s) => this.held.get(s)!);
    let records: R[];
    try {
      records = this.decodeAll(msgs);
    } catch (e) {
      this.retry = seqs;
      return this.fail('read', e);
    }
    try {
      await this.ctx.handler(records);
    } catch (e) {
      // Keep holding exactly these records and hand them over again after the backoff. Holding (rather
      // than a delayed nak) is what keeps later records from overtaking them; a process that dies while
      // holding gives them back through the ack wait.
      this.retry = seqs;
      return this.fail('handle', e);
    }
    this.retry = null;
    this.succeeded();
    for (const m of msgs) {
      this.held.delete(m.seq);
      this.unacked.set(m.seq, replyOf(m));
    }
    this.advance(seqs[seqs.length - 1]);
    await this.commit();
  }

  protected idleNow(): boolean {
    return this.held.size === 0 && this.unacked.size === 0;
  }

  /** Nothing undelivered and nothing unacknowledged: whoever was active handled everything stored. */
  protected async handledElsewhere(): Promise<boolean> {
    const info = await this.ctx.jsm.consumers.info(this.ctx.stream, this.name);
    return info.num_pending === 0 && info.num_ack_pending === 0 && this.idleNow();
  }

  protected async shutdown(): Promise<void> {
    await this.deactivate('closing');
    await this.lease.release();
  }

  private async activate(): Promise<void> {
    this.active = true;
    this.lostConsumer = false;
    const info = await this.ensureConsumer();
    // Resume where the name stands: everything at or below the ack floor was handled by someone.
    this.advance(info.ack_floor.stream_seq);
    await this.startPulling(info);
    const { ackWaitMs } = this.ctx.timings;
    this.timers.push(
      setInterval(() => void this.renew(), Math.max(100, this.lease.ttlMs / 3)),
      // Keeps held records from being redelivered while the handler runs or retries.
      setInterval(() => this.keepAlive(), Math.max(100, ackWaitMs / 3)),
    );
  }

  /** Creates the durable if needed, and brings the settings this consumer relies on up to date. */
  private async ensureConsumer(): Promise<ConsumerInfo> {
    const { jsm, stream, batchSize } = this.ctx;
    const ackWait = nanos(this.ctx.timings.ackWaitMs);
    try {
      return await jsm.consumers.add(stream, {
        durable_name: this.name,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        replay_policy: ReplayPolicy.Instant,
        max_ack_pending: batchSize,
        ack_wait: ackWait,
        max_deliver: -1,
      });
    } catch (e) {
      // It exists with other settings (another batch size or ack wait): adopt ours. Concurrent starts
      // with the same settings are no error at all (the server answers with the existing consumer).
      const code = apiCode(e);
      if (code !== API.CONSUMER_NAME_IN_USE && code !== API.CONSUMER_EXISTS) {
        throw natsUnavailable(`creating durable consumer ${this.name}`, e);
      }
    }
    try {
      const info = await jsm.consumers.info(stream, this.name);
      if (info.config.max_ack_pending === batchSize && info.config.ack_wait === ackWait) return info;
      return await jsm.consumers.update(stream, this.name, { max_ack_pending: batchSize, ack_wait: ackWait });
    } catch (e) {
      throw natsUnavailable(`updating durable consumer ${this.name}`, e);
    }
  }

  private async startPulling(info: ConsumerInfo): Promise<void> {
    const consumer: Consumer = this.ctx.js.consumers.getConsumerFromInfo(info);
    const messages = await consumer.consume({ max_messages: this.ctx.batchSize, expires: PULL_EXPIRES_MS });
    this.messages = messages;
    this.pumpEnded = false;
    this.pump = this.runPump(messages);
    void this.watch(messages);
  }

  private async restartPulling(): Promise<void> {
    await this.stopPulling();
    const info = this.lostConsumer ? await this.ensureConsumer() : await this.consumerInfo();
    this.lostConsumer = false;
    await this.startPulling(info);
  }

  private async consumerInfo(): Promise<ConsumerInfo> {
    try {
      return await this.ctx.jsm.consumers.info(this.ctx.stream, this.name);
    } catch (e) {
      if (apiCode(e) === API.CONSUMER_NOT_FOUND) return this.ensureConsumer();
      throw natsUnavailable(`reading durable consumer ${this.name}`, e);
    }
  }

  private async stopPulling(): Promise<void> {
    const messages = this.messages;
    this.messages = null;
    if (messages) {
      try {
        await messages.close();
      } catch {
        // Already stopped.
      }
    }
    await this.pump;
    this.pump = null;
  }

  /** Moves delivered messages into `held` (redeliveries replace the earlier delivery of a seq). */
  private async runPump(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const m of messages) {
        if (m.seq <= this.pos && !this.held.has(m.seq)) {
          // Handled by this process already; its ack was lost. Acknowledge again, do not hand it over.
          this.unacked.set(m.seq, replyOf(m));
        } else {
          this.held.set(m.seq, m);
        }
        this.wake();
      }
    } catch (e) {
      if (!this.closing && this.messages === messages) this.report('read', e);
    } finally {
      if (this.messages === messages) {
        this.pumpEnded = true;
        this.wake();
      }
    }
  }

  /** Notices a durable deleted under us (an operator, a wiped server): it is created again. */
  private async watch(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const s of messages.status()) {
        if (s.type === 'consumer_deleted' || s.type === 'consumer_not_found') {
          this.lostConsumer = true;
          this.wake();
        }
      }
    } catch {
      // The status stream ends with the messages.
    }
  }

  /** Renews the lease in the background, so a long handler does not lose it. */
  private async renew(): Promise<void> {
    if (!this.active || this.closing) return;
    try {
      if (!(await this.lease.acquire())) this.wake();
    } catch (e) {
      this.report('lock', e);
      if (!this.lease.held) this.wake();
    }
  }

  private keepAlive(): void {
    const { nc } = this.ctx;
    try {
      for (const m of this.held.values()) nc.publish(replyOf(m), '+WPI');
      for (const reply of this.unacked.values()) nc.publish(reply, '+WPI');
    } catch {
      // Disconnected: the server keeps the records pending and redelivers them to us after the ack wait.
    }
  }

  /**
   * Acknowledges handled records: plain `+ACK`s, the last one as a request whose reply confirms that
   * the server processed it (and, since acks from one connection are processed in order, all before it).
   */
  private async commit(): Promise<boolean> {
    const entries = [...this.unacked.entries()].sort((a, b) => a[0] - b[0]);
    if (entries.length === 0) return true;
    const { nc } = this.ctx;
    try {
      for (let i = 0; i < entries.length - 1; i++) nc.publish(entries[i][1], '+ACK');
      await nc.request(entries[entries.length - 1][1], '+ACK', { timeout: this.ctx.requestTimeoutMs });
    } catch (e) {
      await this.fail('commit', e);
      return false;
    }
    for (const [seq] of entries) this.unacked.delete(seq);
    return true;
  }

  /**
   * Stops being the active process: stops pulling, confirms what was handled, and hands back what was
   * not (`-NAK`, redelivered to the next active process after `HAND_BACK_DELAY_MS`). Never throws.
   */
  private async deactivate(reason: string): Promise<void> {
    if (!this.active) return;
    this.active = false;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.stopPulling();
    if (this.unacked.size > 0) {
      const entries = [...this.unacked.entries()].sort((a, b) => a[0] - b[0]);
      try {
        for (let i = 0; i < entries.length - 1; i++) this.ctx.nc.publish(entries[i][1], '+ACK');
        await this.ctx.nc.request(entries[entries.length - 1][1], '+ACK', {
          timeout: this.ctx.requestTimeoutMs,
        });
      } catch (e) {
        // They come back to the next active process after the ack wait (handled twice: at least once).
        this.report('commit', e);
      }
      this.unacked.clear();
    }
    try {
      for (const m of [...this.held.values()].sort((a, b) => a.seq - b.seq)) {
        this.ctx.nc.publish(replyOf(m), HAND_BACK);
      }
    } catch {
      // Disconnected: they come back after the ack wait instead.
    }
    this.held.clear();
    this.retry = null;
    if (reason.startsWith('lease')) {
      this.report(
        'lock',
        new CairnError('CAIRN_UNAVAILABLE', `${this.ctx.label}: ${reason}, records handed back`),
      );
    }
  }
}

/* ------------------------------------------------------------------------------------------------ */

/**
 * A private consumer: an ordered consumer from `after + 1`. Messages are moved into a queue of at most
 * one batch (the client pulls more only as the queue drains, so a slow handler does not buffer the log
 * in memory), and handed to the handler from there.
 */
export class PrivateConsumer<R> extends BaseConsumer<R> {
  private queue: JsMsg[] = [];
  /** Highest seq received: where the next ordered consumer starts after a restart. */
  private cursor: number;
  /** The batch whose handler failed: handed over again as is. */
  private pending: JsMsg[] | null = null;
  private handling = false;
  private messages: ConsumerMessages | null = null;
  private pump: Promise<void> | null = null;
  private pumpEnded = false;
  private space: (() => void) | null = null;

  constructor(ctx: ConsumerContext<R>, after: number) {
    super(ctx, after);
    this.cursor = after;
    this.begin();
  }

  protected async step(): Promise<void> {
    if (!this.messages || this.pumpEnded) {
      try {
        await this.startPulling();
      } catch (e) {
        return this.fail('read', e);
      }
    }
    const seen = this.signalCount;
    let batch = this.pending;
    if (batch === null) {
      if (this.queue.length === 0) {
        await this.reconcile();
        return this.idle(seen, this.awaited ? RECONCILE_MS : IDLE_MS);
      }
      const wait = this.gathered(this.queue.length, this.queue[this.queue.length - 1]);
      if (wait > 0) return this.idle(seen, wait);
      batch = this.queue.splice(0, this.ctx.batchSize);
      this.space?.();
    }
    this.handling = true;
    try {
      let records: R[];
      try {
        records = this.decodeAll(batch);
      } catch (e) {
        this.pending = batch;
        return await this.fail('read', e);
      }
      try {
        await this.ctx.handler(records);
      } catch (e) {
        this.pending = batch;
        return await this.fail('handle', e);
      }
    } finally {
      this.handling = false;
    }
    this.pending = null;
    this.succeeded();
    this.advance(batch[batch.length - 1].seq);
  }

  protected idleNow(): boolean {
    return !this.handling && this.pending === null && this.queue.length === 0;
  }

  /** A private consumer's records are handled by nobody else. */
  protected handledElsewhere(): Promise<boolean> {
    return Promise.resolve(false);
  }

  protected async shutdown(): Promise<void> {
    await this.stopPulling();
  }

  private async startPulling(): Promise<void> {
    await this.stopPulling();
    const start = this.cursor;
    const consumer = await this.ctx.js.consumers.get(
      this.ctx.stream,
      start > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start + 1 } : {},
    );
    const messages = await consumer.consume({ max_messages: this.ctx.batchSize, expires: PULL_EXPIRES_MS });
    this.messages = messages;
    this.pumpEnded = false;
    this.pump = this.runPump(messages);
  }

  private async stopPulling(): Promise<void> {
    const messages = this.messages;
    this.messages = null;
    // First let a pump waiting for queue space go (it sees it is stopped): the client's iterator only
    // completes `close()` once it is iterated again.
    this.space?.();
    if (messages) {
      try {
        await messages.close();
      } catch {
        // Already stopped.
      }
    }
    await this.pump;
    this.pump = null;
  }

  private async runPump(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const m of messages) {
        // A recreated ordered consumer starts after the last seq received; anything at or below it again
        // would be a duplicate of what is queued or handled.
        if (m.seq <= this.cursor) continue;
        this.cursor = m.seq;
        this.queue.push(m);
        this.wake();
        // Back-pressure: stop draining the client (which then stops pulling) while a full batch waits.
        while (this.queue.length >= this.ctx.batchSize && this.messages === messages && !this.closing) {
          await new Promise<void>((resolve) => (this.space = resolve));
          this.space = null;
        }
        if (this.messages !== messages) break;
      }
    } catch (e) {
      if (!this.closing && this.messages === messages) this.report('read', e);
    } finally {
      if (this.messages === messages) {
        this.pumpEnded = true;
        this.wake();
      }
    }
  }
}
