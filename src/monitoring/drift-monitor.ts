/**
 * Live drift against the champion's training snapshot: the event-type mix and the item-popularity
 * distribution of the newest `monitoring.driftWindow` events, compared (PSI, see drift.ts) with the
 * reference the training pipeline stored in the champion's lineage. Exported as
 * `cairn_drift_psi{dimension="event_types"|"item_popularity"}` through metrics.ts `watchDrift`; the
 * `scores` dimension is computed by metrics.ts from served answers.
 *
 * It runs where the event log is consumed (roles all and worker), as a private consumer of its own: it
 * starts at `max(champion's lastEventSeq, head − window)`, so it looks at events the model has not been
 * trained on, and restarts there whenever the champion changes (the freshness monitor tells it).
 *
 * Item popularity: the champion artifact's `extra.popularityBuckets[i]` is the reference bucket of its
 * item `itemIds[i]` (buckets of equal item count, most popular first); an item the model never saw falls
 * in the trailing "unseen" bucket, so a flood of new items reads as drift. Only positive interactions
 * count (as in training's reference), one per event (training counts user-item pairs, so heavy repeat
 * viewing reads as a small shift; the PSI thresholds leave room for that).
 *
 * No reference (a model trained before lineage, or one without drift data) or fewer than
 * MIN_DRIFT_SAMPLE events in the window: no sample, rather than a number that means nothing.
 */
import type { DriftReference, EventTypeSpec, ModelVersion, StoredEvent } from '../domain/types.ts';
import { interactionWeight } from '../features/interactions.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import type { EventLog, LogConsumer } from '../storage/ports.ts';
import { psi, psiByKey } from './drift.ts';
import type { Logger } from './logger.ts';

/** Fewer live events than this give no PSI (too noisy to alert on). */
export const MIN_DRIFT_SAMPLE = 100;

export interface DriftMonitorOptions {
  eventLog: Pick<EventLog, 'head' | 'consume'>;
  registry: Pick<ModelRegistry, 'load'>;
  logger: Logger;
  /** Newest events the live distributions cover (monitoring.driftWindow). */
  window: number;
  /** Event types as configured (which ones are positive interactions). */
  types: Record<string, EventTypeSpec>;
}

/** The live PSI per dimension (null: no sample). */
export interface DriftValues {
  event_types: number | null;
  item_popularity: number | null;
}

/** The reference of one champion, ready to bin live events. */
interface LoadedReference {
  version: string;
  eventTypes: Record<string, number>;
  /** Reference shares per popularity bucket, the last one for unseen items (null: not available). */
  itemPopularity: number[] | null;
  bucketOf: Map<string, number>;
}

export class DriftMonitor {
  private reference: LoadedReference | null = null;
  private consumer: LogConsumer | null = null;
  /** Ring of the window's events: type id and popularity bucket (−1: not a positive interaction). */
  private readonly types: Int32Array;
  private readonly buckets: Int32Array;
  private size = 0;
  private next = 0;
  private typeNames: string[] = [];
  private readonly typeIds = new Map<string, number>();
  private typeCounts: number[] = [];
  private bucketCounts: number[] = [];
  /** Serialises champion switches, so two quick promotions end on the newest. */
  private switching: Promise<void> = Promise.resolve();
  private generation = 0;
  private closed = false;

  constructor(private readonly options: DriftMonitorOptions) {
    const n = Math.max(1, options.window);
    this.types = new Int32Array(n);
    this.buckets = new Int32Array(n);
  }

  /** The champion whose reference live events are compared with (null: stop measuring). */
  useChampion(champion: ModelVersion | null): Promise<void> {
    const generation = ++this.generation;
    this.switching = this.switching.then(async () => {
      if (generation !== this.generation) return;
      try {
        await this.switchTo(champion);
      } catch (err) {
        // E.g. the log closed under it at shutdown: drift goes unmeasured, the process carries on.
        this.options.logger.warn({ err, version: champion?.version }, 'drift: could not follow the champion');
      }
    });
    return this.switching;
  }

  /** The version whose reference is in use (null: none). */
  get referenceVersion(): string | null {
    return this.reference?.version ?? null;
  }

  /** Events in the live window. */
  get sampleSize(): number {
    return this.size;
  }

  /** Highest event seq seen (the private consumer's position; 0 when not consuming). */
  get position(): number {
    return this.consumer?.position ?? 0;
  }

  /** Resolves once the live window has seen the log up to `seq`. */
  async caughtUp(seq: number): Promise<void> {
    await this.switching;
    await this.consumer?.caughtUp(seq);
  }

  /** PSI of the live window against the reference, per dimension. */
  values(): DriftValues {
    const ref = this.reference;
    if (!ref || this.size < MIN_DRIFT_SAMPLE) return { event_types: null, item_popularity: null };
    const live: Record<string, number> = {};
    this.typeNames.forEach((name, id) => {
      if (this.typeCounts[id] > 0) live[name] = this.typeCounts[id];
    });
    const eventTypes = Object.keys(ref.eventTypes).length > 0 ? psiByKey(ref.eventTypes, live) : null;
    let itemPopularity: number | null = null;
    if (ref.itemPopularity) {
      let positives = 0;
      for (const c of this.bucketCounts) positives += c;
      if (positives >= MIN_DRIFT_SAMPLE) itemPopularity = psi(ref.itemPopularity, this.bucketCounts);
    }
    return { event_types: eventTypes, item_popularity: itemPopularity };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.generation++;
    await this.switching;
    await this.stopConsumer();
  }

  private async switchTo(champion: ModelVersion | null): Promise<void> {
    if (this.closed) return;
    if (champion?.version === this.reference?.version && this.consumer) return;
    await this.stopConsumer();
    this.reference = null;
    this.reset(0);
    const drift = champion?.lineage?.drift ?? null;
    if (!champion || !drift) {
      if (champion)
        this.options.logger.info(
          { version: champion.version },
          'drift: the champion has no drift reference; no drift is measured',
        );
      return;
    }
    let reference: LoadedReference;
    let start: number;
    try {
      reference = await this.loadReference(champion, drift);
      const head = await this.options.eventLog.head();
      const trainedUpTo = champion.lineage?.data.lastEventSeq ?? champion.trainingData.lastEventSeq;
      start = Math.max(0, trainedUpTo, head - this.options.window);
    } catch (err) {
      this.options.logger.warn(
        { err, version: champion.version },
        'drift: could not load the reference; will retry when the champion is checked again',
      );
      return;
    }
    if (this.closed) return;
    this.reference = reference;
    this.reset(reference.itemPopularity?.length ?? 0);
    this.consumer = this.options.eventLog.consume({ after: start }, (events) => {
      this.add(events);
      return Promise.resolve();
    });
  }

  private async loadReference(champion: ModelVersion, drift: DriftReference): Promise<LoadedReference> {
    const bucketOf = new Map<string, number>();
    let itemPopularity: number[] | null = null;
    if (drift.itemPopularity.length >= 2) {
      const stored = await this.options.registry.load(champion);
      const buckets = stored.extra.popularityBuckets;
      if (Array.isArray(buckets) && buckets.length === stored.itemIds.length) {
        const unseen = drift.itemPopularity.length - 1;
        stored.itemIds.forEach((id, i) => {
          const b = buckets[i] as unknown;
          if (typeof b === 'number' && Number.isInteger(b) && b >= 0 && b < unseen) bucketOf.set(id, b);
        });
        itemPopularity = drift.itemPopularity;
      } else {
        this.options.logger.warn(
          { version: champion.version },
          'drift: the artifact has no popularity buckets matching its items; item popularity not measured',
        );
      }
    }
    return { version: champion.version, eventTypes: drift.eventTypes, itemPopularity, bucketOf };
  }

  private add(events: StoredEvent[]): void {
    const ref = this.reference;
    if (!ref) return;
    const unseen = (ref.itemPopularity?.length ?? 0) - 1;
    for (const e of events) {
      if (this.size === this.types.length) {
        // Evict the oldest event of the window.
        const old = this.next;
        this.typeCounts[this.types[old]]--;
        if (this.buckets[old] >= 0) this.bucketCounts[this.buckets[old]]--;
      } else {
        this.size++;
      }
      let typeId = this.typeIds.get(e.type);
      if (typeId === undefined) {
        typeId = this.typeNames.length;
        this.typeIds.set(e.type, typeId);
        this.typeNames.push(e.type);
        this.typeCounts.push(0);
      }
      this.typeCounts[typeId]++;
      let bucket = -1;
      if (unseen >= 1 && interactionWeight(this.options.types, e).weight > 0)
        bucket = ref.bucketOf.get(e.itemId) ?? unseen;
      if (bucket >= 0) this.bucketCounts[bucket]++;
      this.types[this.next] = typeId;
      this.buckets[this.next] = bucket;
      this.next = (this.next + 1) % this.types.length;
    }
  }

  private reset(buckets: number): void {
    this.size = 0;
    this.next = 0;
    this.typeNames = [];
    this.typeIds.clear();
    this.typeCounts = [];
    this.bucketCounts = new Array<number>(buckets).fill(0);
  }

  private async stopConsumer(): Promise<void> {
    const c = this.consumer;
    this.consumer = null;
    if (c) await c.close();
  }
}
