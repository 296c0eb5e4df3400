/**
 * `--max-disconnect`: what an agent cut off from every server does with its tasks. By default
 * nothing: they keep running (the servers replace them elsewhere once the node is declared down,
 * and stop these when it comes back). With a limit, the agent stops them itself once no server has
 * answered for that long: for work that must never run twice at once (a singleton, a leader), the
 * price being that a partition longer than the limit stops it even where no replacement could be
 * placed.
 */
import { formatDuration } from '../core/duration.ts';

export interface DisconnectWatch {
  /** How long without an answer from any server before the tasks are stopped. */
  maxMs: number;
  /** When a server last answered (ms). */
  lastContact: () => number;
  /** Stops the tasks; called once per disconnection. */
  onExceeded: (reason: string) => void;
  now?: () => number;
}

/** Checks every `checkMs` until `signal` aborts; stops the tasks once per disconnection. */
export async function watchDisconnect(
  w: DisconnectWatch,
  signal: AbortSignal,
  checkMs = 1_000,
): Promise<void> {
  const now = w.now ?? Date.now;
  let stoppedFor: number | undefined;
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, checkMs);
      signal.addEventListener(
        'abort',
        () => {
          clearTimeout(t);
          resolve();
        },
        { once: true },
      );
    });
    if (signal.aborted) return;
    const last = w.lastContact();
    if (now() - last <= w.maxMs) continue;
    if (stoppedFor === last) continue;
    stoppedFor = last;
    w.onExceeded(
      `no server reachable for ${formatDuration(w.maxMs)} (--max-disconnect): stopped by its agent`,
    );
  }
}
