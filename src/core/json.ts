/** JSON helpers for comparing values, whatever the key order of their objects. */

/** JSON with object keys sorted, so that equal values compare equal whatever their key order. */
export function stableStringify(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(
          Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : value,
  );
}
