/**
 * TypeBox schemas of the next-best-offer endpoint (wire format: snake_case). The querystring is
 * checked here (types, bounds); the decision itself re-checks k and channel (src/offers/service.ts).
 */
import { Type, type Static } from '@sinclair/typebox';
import type { Config } from '../config/load.ts';
import { Nullable, StringEnum } from './schemas.ts';

/** The querystring of GET /v1/users/{id}/next-best-offer (bounds from the configuration). */
export function nextBestOfferQuery(config: Readonly<Config>) {
  const { maxK } = config.serving;
  return Type.Object({
    channel: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description:
          'Where the offer will be shown (e.g. `web`, `email`); offers limited to channels need it',
      }),
    ),
    k: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: maxK,
        description: `Number of offers (1..${maxK}, default ${config.offers.defaultK})`,
      }),
    ),
    explain: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'Also list excluded offers and the rule that excluded each',
      }),
    ),
  });
}
export type NextBestOfferQueryWire = Static<ReturnType<typeof nextBestOfferQuery>>;

const Rule = StringEnum(
  [
    'unavailable',
    'window',
    'inventory',
    'budget',
    'channel',
    'opt_out',
    'segment',
    'suppressed',
    'frequency_cap',
    'global_cap',
  ] as const,
  {
    description:
      '`unavailable`: item unavailable; `window`: outside start/end; `inventory`: none left; `budget`: remaining ' +
      'budget below the value; `channel`: not on this channel; `opt_out`: segment-targeted and the user opted ' +
      "out of personalization; `segment`: user in none of its segments; `suppressed`: after the user's " +
      'outcomes (purchase, dismiss); `frequency_cap`: impressions per period reached; `global_cap`: offer ' +
      'impressions per user per 24 hours reached',
  },
);

export const NextBestOfferResponse = Type.Object({
  request_id: Type.String({ description: 'Id of this answer (impressions recorded under it)' }),
  user_id: Type.String(),
  model_version: Nullable(
    Type.String({
      description: 'The champion whose personal affinity shaped the probabilities; null when none did',
    }),
  ),
  source: StringEnum(['decision'] as const),
  degraded: Type.Boolean({
    description:
      'The contact history could not be read (no offer shown), or offer statistics could not (priors only), ' +
      'or impressions could not be recorded',
  }),
  items: Type.Array(
    Type.Object({
      item_id: Type.String(),
      probability: Type.Number({ description: 'p(convert | user, offer), 0..1' }),
      value: Type.Number({ description: 'The offer value (margin or revenue)' }),
      expected_value: Type.Number({ description: 'probability × value × levers; items are ordered by it' }),
      reason: Type.String(),
    }),
    { description: 'Best first' },
  ),
  excluded: Type.Optional(
    Type.Array(Type.Object({ item_id: Type.String(), rule: Rule, detail: Type.String() }), {
      description: 'With explain=true: every offer left out, and why',
    }),
  ),
});
export type NextBestOfferWire = Static<typeof NextBestOfferResponse>;
