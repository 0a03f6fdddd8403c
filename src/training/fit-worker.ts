/**
 * Worker-thread entry of the training fit (see fit.ts). Receives a FitInput as workerData, reports
 * progress as messages and posts the artifact back, transferring its arrays instead of copying.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isCairnError } from '../errors/errors.ts';
import { fitAndEvaluate, type FitInput, type FitOutput } from './fit.ts';

export type FitWorkerMessage =
  | { type: 'progress'; fraction: number; stage: string }
  | { type: 'done'; output: FitOutput }
  | { type: 'error'; message: string; name: string; code: string | null };

const port = parentPort!;
const abort = new AbortController();
port.on('message', (m: { type: string }) => {
  if (m.type === 'abort') abort.abort(new Error('training cancelled'));
});

let lastSent = 0;
fitAndEvaluate(
  workerData as FitInput,
  (fraction, stage) => {
    const now = Date.now();
    if (now - lastSent < 100) return;
    lastSent = now;
    port.postMessage({ type: 'progress', fraction, stage } satisfies FitWorkerMessage);
  },
  abort.signal,
).then(
  (output) => {
    const transfer = Object.values(output.artifact.arrays).map((a) => a.buffer as ArrayBuffer);
    // Shared buffers cannot be transferred (and need not be): keep only ordinary ones.
    port.postMessage(
      { type: 'done', output } satisfies FitWorkerMessage,
      transfer.filter((b) => b instanceof ArrayBuffer),
    );
    port.close();
  },
  (err: unknown) => {
    const e = err instanceof Error ? err : new Error(String(err));
    const code = isCairnError(err) ? err.code : null;
    port.postMessage({ type: 'error', message: e.message, name: e.name, code } satisfies FitWorkerMessage);
    port.close();
  },
);
