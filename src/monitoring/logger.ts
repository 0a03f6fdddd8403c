/** Structured JSON logs (pino). One root logger per process; request loggers are its children. */
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export function createLogger(
  level: string,
  options: { name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  return pino(
    {
      level,
      name: options.name ?? 'cairn',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? process.stdout,
  );
}
