/**
 * The algorithm registry: every trainable model by name, parameter resolution, and artifact loading.
 * Training, evaluation, tuning and serving reach algorithms only through here.
 */
import { CairnError } from '../errors/errors.ts';
import { alsParams, alsSpec } from './als.ts';
import { bprParams, bprSpec } from './bpr.ts';
import { easeParams, easeSpec } from './ease.ts';
import { itemKnnParams, itemknnSpec } from './itemknn.ts';
import { asBoolean, asNumber } from './params.ts';
import { popParams, popSpec } from './popularity.ts';
import { rp3betaParams, rp3betaSpec } from './rp3beta.ts';
import type {
  AlgorithmName,
  AlgorithmSpec,
  FittedModel,
  ModelArtifact,
  Params,
  ParamValue,
} from './types.ts';

export const ALGORITHMS: Readonly<Record<AlgorithmName, AlgorithmSpec>> = Object.freeze({
  pop: popSpec,
  itemknn: itemknnSpec,
  als: alsSpec,
  bpr: bprSpec,
  ease: easeSpec,
  rp3beta: rp3betaSpec,
});

/** Each algorithm's own reader: checks ranges and cross-field rules the search space cannot express. */
const VALIDATORS: Readonly<Record<AlgorithmName, (p: Params) => unknown>> = {
  pop: popParams,
  itemknn: itemKnnParams,
  als: alsParams,
  bpr: bprParams,
  ease: easeParams,
  rp3beta: rp3betaParams,
};

export const ALGORITHM_NAMES = Object.keys(ALGORITHMS) as AlgorithmName[];

export function isAlgorithmName(name: string): name is AlgorithmName {
  return Object.prototype.hasOwnProperty.call(ALGORITHMS, name);
}

/** The spec of `name`; throws CAIRN_VALIDATION naming the known algorithms otherwise. */
export function getAlgorithm(name: string): AlgorithmSpec {
  if (!isAlgorithmName(name)) {
    throw CairnError.validation([
      { field: 'algorithm', message: `unknown algorithm "${name}" (known: ${ALGORITHM_NAMES.join(', ')})` },
    ]);
  }
  return ALGORITHMS[name];
}

function invalid(spec: AlgorithmSpec, key: string, message: string): CairnError {
  return CairnError.validation([{ field: `${spec.name}.${key}`, message }]);
}

/** Coerces one override to the type of the parameter's default and checks it against the space. */
function coerce(spec: AlgorithmSpec, key: string, raw: ParamValue): ParamValue {
  const def = spec.defaults[key];
  const space = spec.space[key];
  let v: ParamValue;
  if (typeof def === 'number') {
    const n = asNumber(raw);
    if (n === undefined) throw invalid(spec, key, `must be a number, got ${JSON.stringify(raw)}`);
    if (space?.kind === 'int' && !Number.isInteger(n)) throw invalid(spec, key, 'must be an integer');
    v = n;
  } else if (typeof def === 'boolean') {
    const b = asBoolean(raw);
    if (b === undefined) throw invalid(spec, key, `must be true or false, got ${JSON.stringify(raw)}`);
    v = b;
  } else {
    if (typeof raw !== 'string') throw invalid(spec, key, `must be a string, got ${JSON.stringify(raw)}`);
    v = raw;
  }
  // A string choice is a closed set; numeric choices and ranges only bound the tuner's search.
  if (space?.kind === 'choice' && typeof v === 'string' && !space.values.includes(v)) {
    throw invalid(spec, key, `must be one of ${space.values.map((x) => JSON.stringify(x)).join(', ')}`);
  }
  return v;
}

/**
 * The full parameter set of `spec`: its defaults overridden by `overrides`, each coerced to the
 * type of its default (so `"64"` from a command line becomes 64) and validated by the algorithm's
 * own reader. Throws CAIRN_VALIDATION naming `algorithm.param` on an unknown name or a bad value.
 */
export function resolveParams(
  spec: AlgorithmSpec,
  overrides: Readonly<Record<string, ParamValue>> = {},
): Params {
  const out: Params = { ...spec.defaults };
  for (const [key, raw] of Object.entries(overrides)) {
    if (!Object.prototype.hasOwnProperty.call(spec.defaults, key)) {
      const known = Object.keys(spec.defaults).join(', ');
      throw invalid(spec, key, `unknown parameter (known: ${known})`);
    }
    out[key] = coerce(spec, key, raw);
  }
  VALIDATORS[spec.name](out);
  return out;
}

/** Rebuilds a fitted model from its artifact, whatever the algorithm. */
export function loadArtifact(artifact: ModelArtifact): FittedModel {
  return getAlgorithm(artifact.algorithm).load(artifact);
}
