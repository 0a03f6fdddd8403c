/**
 * JSON Lines of Cairn events in the HTTP wire format, one event per line:
 * `{"event_id","user_id","item_id","type","value"?,"timestamp"?}` with `timestamp` an epoch-ms
 * number or an ISO-8601 string (as `POST /v1/events` accepts), so exported event logs evaluate as-is.
 */
import { LineError, type ParsedRow } from './types.ts';

function id(v: unknown, field: string): string {
  if (typeof v === 'string' && v.length > 0) return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  throw new LineError(`${field} must be a non-empty string`);
}

/** One line of a JSONL event file; null for a blank line. */
export function parseJsonlLine(line: string): ParsedRow | null {
  const text = line.trim();
  if (text.length === 0) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new LineError('not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new LineError('each line must be a JSON object');
  }
  const e = parsed as Record<string, unknown>;
  if (typeof e.type !== 'string' || e.type.length === 0)
    throw new LineError('type must be a non-empty string');
  let value = NaN;
  if (e.value !== undefined && e.value !== null) {
    if (typeof e.value !== 'number' || !Number.isFinite(e.value))
      throw new LineError('value must be a number');
    value = e.value;
  }
  let timestamp = NaN;
  if (e.timestamp !== undefined && e.timestamp !== null) {
    if (typeof e.timestamp === 'number' && Number.isFinite(e.timestamp)) timestamp = e.timestamp;
    else if (typeof e.timestamp === 'string') {
      timestamp = Date.parse(e.timestamp);
      if (Number.isNaN(timestamp)) throw new LineError('timestamp is not ISO-8601');
    } else throw new LineError('timestamp must be epoch ms or an ISO-8601 string');
  }
  return { user: id(e.user_id, 'user_id'), item: id(e.item_id, 'item_id'), value, timestamp, type: e.type };
}
