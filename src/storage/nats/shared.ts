/**
 * Names, subject encoding and error mapping shared by the NATS JetStream log adapter (log.ts), its
 * consumers (consumers.ts) and the consumer lease (lease.ts). No I/O here.
 */
import { createHash } from 'node:crypto';
import { JetStreamApiError } from '@nats-io/jetstream';
import { CairnError } from '../../errors/errors.ts';

/** Same rule as `nats.streamPrefix` in the config schema (stream names must stay valid). */
const STREAM_PREFIX = /^[A-Za-z0-9_-]{1,32}$/;

/** JetStream API error codes the adapter reacts to. */
export const API = {
  /** `stream name already in use with a different configuration`. */
  STREAM_NAME_IN_USE: 10058,
  /** `subjects overlap with an existing stream`. */
  SUBJECT_OVERLAP: 10065,
  /** `consumer name already in use` (2.9) / `consumer already exists` (2.10+). */
  CONSUMER_NAME_IN_USE: 10013,
  CONSUMER_EXISTS: 10148,
  CONSUMER_NOT_FOUND: 10014,
  STREAM_NOT_FOUND: 10059,
  /** `wrong last sequence` for an `expect.lastSubjectSequence` publish. */
  WRONG_LAST_SEQUENCE: 10071,
  /** `no message found`. */
  NO_MESSAGE_FOUND: 10037,
  /** `sequence N not found` (deleting a seq that is gone already). */
  SEQUENCE_NOT_FOUND: 10043,
  /** `message delete failed: …` (`stream store EOF` for a seq past the end). */
  MESSAGE_DELETE_FAILED: 10057,
} as const;

/** Every JetStream name Cairn uses, derived from `nats.streamPrefix`. */
export interface NatsNames {
  /** `<PREFIX>_EVENTS`: behaviour events, one subject per user. */
  eventsStream: string;
  /** `<prefix>.events.` — an event's subject is this plus the user's token (see `userToken`). */
  eventSubjectPrefix: string;
  /** `<PREFIX>_CHANGES`: entity changes, one subject. */
  changesStream: string;
  changesSubject: string;
  /** `<PREFIX>_LEASES`: one short-lived lease message per durable consumer name (see lease.ts). */
  leasesStream: string;
  leaseSubjectPrefix: string;
}

/**
 * Stream names keep the prefix as configured (`CAIRN_EVENTS`); subjects use it lower-cased
 * (`cairn.events.…`), the NATS convention. Two prefixes that differ only in case therefore collide on
 * subjects: JetStream refuses the second deployment's streams (reported as CAIRN_CONFIG_INVALID).
 */
export function natsNames(streamPrefix: string): NatsNames {
  if (!STREAM_PREFIX.test(streamPrefix)) {
    const message = 'must be 1 to 32 characters among A-Z a-z 0-9 _ -';
    throw new CairnError('CAIRN_CONFIG_INVALID', `invalid configuration: nats.streamPrefix ${message}`, {
      fields: [{ field: 'nats.streamPrefix', message }],
    });
  }
  const subject = streamPrefix.toLowerCase();
  return {
    eventsStream: `${streamPrefix}_EVENTS`,
    eventSubjectPrefix: `${subject}.events.`,
    changesStream: `${streamPrefix}_CHANGES`,
    changesSubject: `${subject}.changes`,
    leasesStream: `${streamPrefix}_LEASES`,
    leaseSubjectPrefix: `${subject}.leases.`,
  };
}

/**
 * Longest subject token taken verbatim from base64url. Longer ids are hashed: a PUB control line over
 * the server's `max_control_line` (4 KiB by default) would make the server drop the whole connection.
 */
const MAX_VERBATIM_TOKEN = 256;

/**
 * The subject token of a user: base64url of the UTF-8 id (any id becomes a valid, wildcard-free token,
 * and distinct ids get distinct tokens), `=` for the empty id (never produced by base64url), and `#` +
 * SHA-256 for very long ids. `forgetUser` purges exactly the subject built from the same token.
 */
export function userToken(userId: string): string {
  if (userId === '') return '=';
  const token = Buffer.from(userId, 'utf8').toString('base64url');
  if (token.length <= MAX_VERBATIM_TOKEN) return token;
  return `#${createHash('sha256').update(userId, 'utf8').digest('base64url')}`;
}

const CONSUMER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * A durable name as JetStream accepts it. Names made of `A-Z a-z 0-9 _ -` (up to 64) are kept, so they
 * read the same in `nats consumer ls`; anything else (dots, spaces, wildcards are forbidden there) maps to
 * a stable hash, so every process using the same name still meets on the same consumer.
 */
export function consumerName(durable: string): string {
  if (CONSUMER_NAME.test(durable)) return durable;
  return `h_${createHash('sha256').update(durable, 'utf8').digest('hex').slice(0, 40)}`;
}

/** A NATS message id header value must be one line of visible ASCII; event ids normally are. */
const HEADER_SAFE = /^[\x21-\x7e]{1,256}$/;

/** The JetStream `Nats-Msg-Id` of an event id (hashed only when it could not travel in a header). */
export function messageId(eventId: string): string {
  if (HEADER_SAFE.test(eventId)) return eventId;
  return `sha256:${createHash('sha256').update(eventId, 'utf8').digest('base64url')}`;
}

/** Whether a failed message delete says the message is gone already (erasing it again is then done). */
export function messageGone(e: unknown): boolean {
  const code = apiCode(e);
  return (
    code === API.NO_MESSAGE_FOUND ||
    code === API.SEQUENCE_NOT_FOUND ||
    (code === API.MESSAGE_DELETE_FAILED && /EOF|not found/i.test((e as Error).message))
  );
}

/** The JetStream API error code of `e`, if it is one. */
export function apiCode(e: unknown): number | undefined {
  return e instanceof JetStreamApiError ? e.code : undefined;
}

/**
 * Anything that goes wrong talking to NATS is CAIRN_UNAVAILABLE for Cairn: a timeout, a closed or
 * reconnecting connection, a missing stream. Typed errors pass through unchanged. The message names
 * the operation, never the server URL (it may carry credentials).
 */
export function natsUnavailable(operation: string, e: unknown): CairnError {
  if (e instanceof CairnError) return e;
  const reason = e instanceof Error ? e.message : String(e);
  return new CairnError(
    'CAIRN_UNAVAILABLE',
    `NATS JetStream unavailable: ${operation}: ${reason}`,
    undefined,
    {
      cause: e,
    },
  );
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
