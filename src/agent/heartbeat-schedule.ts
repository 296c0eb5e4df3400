/**
 * When an agent beats. The server says how often (`intervalMs`, in the registration and every
 * heartbeat answer); the agent beats that often measured from the start of the previous beat (a slow
 * answer does not stretch the period), each wait shortened by up to JITTER of the interval at
 * random, so that agents started together (a server restart, a rack powered on) spread their beats
 * instead of arriving in one burst every interval. Jitter only ever shortens a wait: the leader's
 * grace is counted from the last beat, and beating early never costs it.
 */

export const JITTER = 0.1;

/** Until a server says otherwise. */
export const FALLBACK_INTERVAL_MS = 1_000;

/** The interval a server asks for; from an older server, a third of its TTL. */
export function heartbeatInterval(answer: { intervalMs?: number; ttlSeconds?: number }): number {
  const ms =
    answer.intervalMs ?? (answer.ttlSeconds !== undefined ? (answer.ttlSeconds * 1000) / 3 : undefined);
  return ms !== undefined && Number.isFinite(ms) && ms >= 50 ? ms : FALLBACK_INTERVAL_MS;
}

/** How long to wait before the next beat, `sinceLastMs` after the previous one started. */
export function nextBeatIn(
  intervalMs: number,
  sinceLastMs: number,
  random: () => number = Math.random,
): number {
  return Math.max(0, intervalMs * (1 - JITTER * random()) - sinceLastMs);
}
