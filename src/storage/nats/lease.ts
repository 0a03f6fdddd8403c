/**
 * Exclusive ownership of a durable consumer name across processes, on JetStream itself.
 *
 * Why: a JetStream durable shared by several pulling clients hands each of them a different slice of the
 * stream, and they handle their slices concurrently. Cairn's durable consumers promise log order (the
 * online projector skips records at or below its watermark, so an overtaking batch would make it skip
 * the overtaken one for good). So, like the SQL logs, at most one process is active per durable name;
 * the others stand by and take over when it stops or dies.
 *
 * How: the `<PREFIX>_LEASES` stream keeps at most one message per subject (`max_msgs_per_subject: 1`) and
 * drops messages older than the lease time (`max_age`). Taking the lease is publishing on the name's
 * subject with `expect.lastSubjectSequence = 0` (no live lease); renewing is publishing with the holder's
 * own last sequence. Both are compare-and-set on the server, so two processes can never hold the same
 * name. A holder that stops renewing (crash, partition) loses the lease when the server ages its message
 * out; the holder itself stops trusting its lease earlier (a margin before the server would expire it,
 * measured from before the renewal was sent), so two holders never overlap.
 */
import { nuid } from '@nats-io/transport-node';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { API, apiCode, natsUnavailable } from './shared.ts';

export interface LeaseOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  stream: string;
  subject: string;
  /** Must equal the lease stream's `max_age`. */
  ttlMs: number;
  /** PubAck / API timeout. */
  timeoutMs: number;
}

interface LeaseBody {
  owner: string;
}

/** The lease on one durable consumer name (see the file comment). Not shared between consumers. */
export class NatsLease {
  /** Unique per consumer instance, so two consumers of one name in one process also exclude each other. */
  readonly owner = nuid.next();
  /** Stream seq of this holder's newest lease message; 0 when not held. */
  private seq = 0;
  /** Local clock (performance.now) until which this holder trusts its lease. */
  private validUntil = 0;
  /**
   * Bumped each time the lease is taken afresh (no live lease message was there) rather than renewed:
   * within one epoch nobody else can have held the name, since taking it needs our message gone.
   */
  private generation = 0;
  /** Lease operations run one at a time (a background renewal may meet a foreground acquire). */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: LeaseOptions) {}

  /** How long the server keeps a lease message (the lease stream's `max_age`). */
  get ttlMs(): number {
    return this.options.ttlMs;
  }

  /** Changes whenever the lease was taken afresh; equal epochs mean nobody else held it in between. */
  get epoch(): number {
    return this.generation;
  }

  /** True while the lease is held and safely within its time. */
  get held(): boolean {
    return this.seq > 0 && performance.now() < this.validUntil;
  }

  /**
   * Takes the lease if it is free, or renews it if held. True when held afterwards; throws
   * CAIRN_UNAVAILABLE when NATS cannot be reached (the caller then no longer trusts an old lease).
   */
  acquire(): Promise<boolean> {
    const next = this.tail.then(
      () => this.tryAcquire(),
      () => this.tryAcquire(),
    );
    this.tail = next.catch(() => undefined);
    return next;
  }

  private async tryAcquire(): Promise<boolean> {
    const { jsm, stream, subject } = this.options;
    const body = JSON.stringify({ owner: this.owner } satisfies LeaseBody);
    if (this.seq > 0) {
      if (await this.publish(body, this.seq)) return true;
      // Our message is gone (aged out during a long pause or outage): compete for it like anyone else.
      this.drop();
    }
    let last;
    try {
      last = await jsm.streams.getMessage(stream, { last_by_subj: subject });
    } catch (e) {
      throw natsUnavailable(`reading lease ${subject}`, e);
    }
    if (last) {
      // Our own lease from an earlier run of this instance (a renewal whose PubAck was lost) is ours.
      const holder = (last.json<LeaseBody>() ?? { owner: '' }).owner;
      if (holder !== this.owner) return false;
      return this.publish(body, last.seq);
    }
    if (!(await this.publish(body, 0))) return false;
    this.generation++;
    return true;
  }

  /** Gives the lease up at once so a standby does not wait for it to age out. Never throws. */
  async release(): Promise<void> {
    await this.tail;
    const seq = this.seq;
    this.drop();
    if (seq === 0) return;
    try {
      // Deleting our own message by seq can only remove our lease, never a successor's.
      await this.options.jsm.streams.deleteMessage(this.options.stream, seq, false);
    } catch {
      // Already aged out or NATS unreachable: the lease then expires by itself.
    }
  }

  /** Forgets the lease locally (no network). */
  drop(): void {
    this.seq = 0;
    this.validUntil = 0;
  }

  /** Compare-and-set publish; false when another holder's message is in the way. */
  private async publish(body: string, expected: number): Promise<boolean> {
    const { js, subject, ttlMs, timeoutMs } = this.options;
    const sentAt = performance.now();
    try {
      const ack = await js.publish(subject, body, {
        expect: { lastSubjectSequence: expected },
        timeout: timeoutMs,
      });
      this.seq = ack.seq;
      // The server ages the message out `ttlMs` after storing it, which is after `sentAt`; trusting it for
      // two thirds of that leaves room for a renewal to be late without two holders ever overlapping.
      this.validUntil = sentAt + (ttlMs * 2) / 3;
      return true;
    } catch (e) {
      if (apiCode(e) === API.WRONG_LAST_SEQUENCE) return false;
      throw natsUnavailable(`publishing lease ${subject}`, e);
    }
  }
}
