/**
 * Durations in job files and flags: "500ms", "2s", "1m30s", "1h", or a plain number of milliseconds.
 * Inside unum every duration is a number of milliseconds.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;

/** Parses a duration; returns undefined when the text is not one. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? Math.round(input) : undefined;
  const text = input.trim();
  if (/^\d+$/.test(text)) return Number(text);
  if (!WHOLE.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(PART)) total += Number(m[1]) * (UNIT_MS[m[2] ?? 'ms'] ?? 1);
  return Math.round(total);
}

/** Formats milliseconds the way people write them: 1500 → "1.5s", 90000 → "1m30s". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) {
    const s = ms / 1000;
    return `${Number.isInteger(s) ? s : s.toFixed(1)}s`;
  }
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('');
}

/** "3m ago"-style age for tables. */
export function formatAge(sinceMs: number, nowMs: number): string {
  const d = Math.max(0, nowMs - sinceMs);
  if (d < 1000) return 'now';
  const text = formatDuration(d < 60_000 ? Math.floor(d / 1000) * 1000 : d);
  // Keep only the largest two units: "1h2m", not "1h2m3s".
  const m = /^(\d+[a-z]+)(\d+[a-z]+)?/.exec(text);
  return m ? `${m[1]}${m[2] ?? ''}` : text;
}
