/** Liveness and readiness probes. */
import type { FastifyInstance } from 'fastify';
import type { HealthCheck, HealthService } from '../../monitoring/health.ts';
import { LiveResponse, ReadyResponse, withErrors, type ReadyWire } from '../schemas.ts';

export function registerHealthRoutes(app: FastifyInstance, health: HealthService): void {
  app.get(
    '/health/live',
    {
      config: { scope: 'public' },
      schema: {
        tags: ['health'],
        operationId: 'live',
        summary: 'Liveness: the process answers',
        response: withErrors({ 200: LiveResponse }),
      },
    },
    () => ({ status: 'ok' as const }),
  );

  app.get(
    '/health/ready',
    {
      config: { scope: 'public' },
      schema: {
        tags: ['health'],
        operationId: 'ready',
        summary: 'Readiness: the store is reachable and recommendations can be answered',
        description: '503 with the failing checks (and why) when not ready.',
        response: withErrors({ 200: ReadyResponse, 503: ReadyResponse }),
      },
    },
    async (request, reply) => {
      let ready: boolean;
      let checks: Record<string, HealthCheck>;
      try {
        ({ ready, checks } = await health.ready());
      } catch (err) {
        // A throwing probe is itself a reason not to be ready; the cause goes to the log only.
        request.log.error({ err }, 'readiness check failed');
        ready = false;
        checks = { health: { ok: false, detail: 'readiness check failed' } };
      }
      const body: ReadyWire = { status: ready ? 'ready' : 'not_ready', checks };
      return reply.code(ready ? 200 : 503).send(body);
    },
  );
}
