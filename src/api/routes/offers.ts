/** Next-best-offer: GET /v1/users/:id/next-best-offer (the decision lives in src/offers). */
import type { FastifyInstance } from 'fastify';
import type {
  NextBestOfferRequest,
  NextBestOfferResult,
  NextBestOfferService,
} from '../../offers/contracts.ts';
import {
  NextBestOfferResponse,
  nextBestOfferQuery,
  type NextBestOfferQueryWire,
  type NextBestOfferWire,
} from '../offer-schemas.ts';
import { IdParams, withErrors, type IdParamsWire } from '../schemas.ts';
import type { RouteContext } from './common.ts';

export function registerOfferRoutes(
  app: FastifyInstance,
  { deps }: RouteContext,
  offers: NextBestOfferService,
): void {
  app.get<{ Params: IdParamsWire; Querystring: NextBestOfferQueryWire }>(
    '/v1/users/:id/next-best-offer',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['recommendations'],
        operationId: 'getNextBestOffer',
        summary: 'The next best offers for a user',
        description:
          'Offers are catalog items whose attributes carry `offer` ({value, lever?, segments?, channels?, ' +
          'start?, end?, inventory?, budget?, policy?}). Eligible offers are ordered by expected value = ' +
          'probability × value × lever; offers past their contact policy (frequency cap, suppression after ' +
          'outcomes, the global daily cap) are left out. Served offers are recorded as `impression` events.',
        params: IdParams,
        querystring: nextBestOfferQuery(deps.config),
        response: withErrors({ 200: NextBestOfferResponse }),
      },
    },
    async (request) => {
      const q = request.query;
      const req: NextBestOfferRequest = { userId: request.params.id };
      if (q.channel !== undefined) req.channel = q.channel;
      if (q.k !== undefined) req.k = q.k;
      if (q.explain !== undefined) req.explain = q.explain;
      return nextBestOfferToWire(await offers.nextBestOffer(request.ctx, req));
    },
  );
}

export function nextBestOfferToWire(r: NextBestOfferResult): NextBestOfferWire {
  const wire: NextBestOfferWire = {
    request_id: r.requestId,
    user_id: r.userId,
    model_version: r.modelVersion,
    source: r.source,
    degraded: r.degraded,
    items: r.items.map((i) => ({
      item_id: i.itemId,
      probability: i.probability,
      value: i.value,
      expected_value: i.expectedValue,
      reason: i.reason,
    })),
  };
  if (r.excluded)
    wire.excluded = r.excluded.map((e) => ({ item_id: e.itemId, rule: e.rule, detail: e.detail }));
  return wire;
}
