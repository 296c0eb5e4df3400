/** Query parameters shared by routes: each failure is an InvalidError naming the parameter. */
import { InvalidError } from '../core/errors.ts';

/** Parses `?index=N&wait=30s` of a blocking query (wait at most 5 minutes). */
export function blockingParams(
  query: URLSearchParams,
  parseDuration: (s: string) => number | undefined,
): { index: number; waitMs: number } {
  const index = countParam(query, 'index') ?? 0;
  const waitText = query.get('wait');
  let waitMs = 0;
  if (waitText !== null) {
    const ms = parseDuration(waitText);
    if (ms === undefined)
      throw new InvalidError(
        `wait: expected a duration like "30s", got ${JSON.stringify(waitText.slice(0, 100))}`,
      );
    waitMs = Math.min(ms, 5 * 60_000);
  } else if (query.has('index')) waitMs = 5 * 60_000;
  return { index, waitMs };
}

/** `true`/`1` or `false`/`0`/empty/absent. */
export function booleanParam(query: URLSearchParams, name: string): boolean {
  const v = query.get(name);
  if (v === null || v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw new InvalidError(`${name}: expected true or false, got ${JSON.stringify(v.slice(0, 100))}`);
}

/** A whole number, 0 or more; undefined when absent or empty. */
export function countParam(query: URLSearchParams, name: string): number | undefined {
  const v = query.get(name);
  if (v === null || v === '') return undefined;
  if (!/^\d{1,15}$/.test(v))
    throw new InvalidError(
      `${name}: expected a whole number, 0 or more, got ${JSON.stringify(v.slice(0, 100))}`,
    );
  return Number(v);
}
