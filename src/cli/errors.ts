/**
 * How the `cairn` command reports a failure: one line `error CAIRN_X: message` (plus one line per
 * offending field), and an exit status — 2 for the caller's mistakes (bad flags, bad input or configuration,
 * a store or file that is not there), 1 for everything else. Stack traces only on request (`--debug`,
 * `CAIRN_DEBUG=1`): a user error is not a crash.
 */
import { CommanderError, type Command } from 'commander';
import { CairnError, isCairnError, type ErrorCode, type FieldIssue } from '../errors/errors.ts';

export interface CliFailure {
  /** What to write to stderr ('' when commander has already said everything, e.g. after help). */
  text: string;
  exitCode: number;
}

/** Exit status of a usage or input error (what shells and scripts tell apart from a crash). */
export const USER_ERROR_EXIT = 2;

/** Node system errors a user causes (a wrong path, a port in use), as Cairn codes. */
const SYSTEM_ERRORS: Record<string, ErrorCode> = {
  ENOENT: 'CAIRN_NOT_FOUND',
  ENOTDIR: 'CAIRN_NOT_FOUND',
  EISDIR: 'CAIRN_VALIDATION',
  EACCES: 'CAIRN_FORBIDDEN',
  EPERM: 'CAIRN_FORBIDDEN',
  EROFS: 'CAIRN_FORBIDDEN',
  EADDRINUSE: 'CAIRN_CONFLICT',
  EADDRNOTAVAIL: 'CAIRN_VALIDATION',
};

/**
 * Makes commander throw its errors instead of printing them and exiting, so they get the one error line
 * of `describeCliError`. Sub-commands registered afterwards inherit it.
 */
export function throwingErrors(program: Command): Command {
  return program.exitOverride().configureOutput({ outputError: () => undefined });
}

/** `--debug` anywhere before a `--` terminator, or `CAIRN_DEBUG=1`/`true`. Read raw: parsing may be what failed. */
export function debugRequested(argv: readonly string[], env: Record<string, string | undefined>): boolean {
  const end = argv.indexOf('--');
  if ((end === -1 ? argv : argv.slice(0, end)).includes('--debug')) return true;
  return env.CAIRN_DEBUG === '1' || env.CAIRN_DEBUG === 'true';
}

/** Commander's own message (`error: unknown option '--x'\n(Did you mean --y?)`) on one line. */
function oneLine(text: string): string {
  return text
    .replace(/^error:\s*/, '')
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .join(' ');
}

/**
 * The lines after the headline: one per field issue the headline does not already say, else the rest of
 * a multi-line message, indented.
 */
function detailLines(err: CairnError, headline: string): string[] {
  const fields = (err.details as { fields?: unknown } | null | undefined)?.fields;
  if (Array.isArray(fields)) {
    return (fields as FieldIssue[])
      .filter((f) => typeof f?.field === 'string' && !headline.includes(String(f.message)))
      .map((f) => `  ${f.field}: ${oneLine(String(f.message))}`);
  }
  return err.message
    .split('\n')
    .slice(1)
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => `  ${s}`);
}

/** A system error (fs, net) as the CairnError it stands for, or null. */
function fromSystemError(err: unknown): CairnError | null {
  const code = (err as { code?: unknown } | null)?.code;
  const mapped = typeof code === 'string' ? SYSTEM_ERRORS[code] : undefined;
  return mapped ? new CairnError(mapped, (err as Error).message, undefined, { cause: err }) : null;
}

function stackOf(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

/** What to print and which exit status to set for an error that ended the command. */
export function describeCliError(err: unknown, debug: boolean): CliFailure {
  if (err instanceof CommanderError) {
    // Help and version output (and the help shown for a bare `cairn`) are complete already.
    if (err.code.startsWith('commander.help') || err.code === 'commander.version') {
      return { text: '', exitCode: err.exitCode };
    }
    return {
      text: `error CAIRN_VALIDATION: ${oneLine(err.message)} (see --help)\n`,
      exitCode: USER_ERROR_EXIT,
    };
  }
  const cairn = isCairnError(err) ? err : fromSystemError(err);
  const trace = debug ? `${stackOf(err)}\n` : '';
  if (cairn) {
    const headline = cairn.message.split('\n', 1)[0].trim();
    const lines = [`error ${cairn.code}: ${headline}`, ...detailLines(cairn, headline)];
    // A bad configuration is the caller's to fix, though a server answers it with a 500.
    const userError = cairn.isClientError || cairn.code === 'CAIRN_CONFIG_INVALID';
    return { text: `${lines.join('\n')}\n${trace}`, exitCode: userError ? USER_ERROR_EXIT : 1 };
  }
  const message = err instanceof Error ? oneLine(err.message) : String(err);
  const hint = debug ? '' : ' (run with --debug or CAIRN_DEBUG=1 for the stack trace)';
  return { text: `error CAIRN_INTERNAL: ${message}${hint}\n${trace}`, exitCode: 1 };
}
