/** `unum events [-f]`: the cluster's history, like syslog for the whole computer. */
import { setTimeout as delay } from 'node:timers/promises';
import type { UnumClient } from '../../api/client.ts';
import type { EventsPage } from '../../api/types.ts';
import { CompactedError, UnavailableError } from '../../core/errors.ts';
import { shortId } from '../../core/ids.ts';
import type { ClusterEvent } from '../../core/types.ts';
import { boolFlag, intFlag, positionals, stringFlag, type Command, type Context } from '../context.ts';
import { formatClock, json, printableDeep, table, visibleWidth, type Colors } from '../output.ts';

const DEFAULT_LIMIT = 50;
const PAGE = 1000;

export const eventsCommand: Command = {
  name: 'events',
  summary: "Show the cluster's recent events; -f follows them",
  usage: `Usage: unum events [-f] [--job JOB] [--index N] [--limit N]

Shows the most recent events of the cluster (TIME, TOPIC, TYPE, OBJECT,
MESSAGE): jobs submitted, allocations placed, tasks started and restarted,
nodes joining and leaving. With -f, keeps printing new events as they
happen, and resumes where it left off if the connection to the server drops.

Flags:
  -f, --follow         keep printing new events (Ctrl-C stops)
  --job JOB            only events of this job (in the namespace of -n)
  --index N            events after this index, instead of the most recent ones
  --limit N            how many events to show first (default: ${DEFAULT_LIMIT})
  -n, --namespace NS   only this namespace
  --json               without -f: { events, index }; with -f: one event per line
  --raw                print messages exactly as stored, terminal escape
                       sequences included (default: control characters are
                       shown as \\x1b-style escapes)

Examples:
  unum events
  unum events -f --job web
  unum events --index 1200 --limit 10 --json
`,
  flags: {
    follow: { type: 'boolean', short: 'f' },
    job: { type: 'string' },
    index: { type: 'string' },
    limit: { type: 'string' },
    raw: { type: 'boolean' },
  },
  async run(args, ctx) {
    positionals(args, 0, 0, '');
    const client = ctx.client();
    const job = stringFlag(args, 'job');
    const limit = intFlag(args, 'limit', 1) ?? DEFAULT_LIMIT;
    const after = intFlag(args, 'index', 0);
    const filter = {
      ...(ctx.namespaceExplicit || job !== undefined ? { namespace: ctx.namespace } : {}),
      ...(job !== undefined ? { job } : {}),
    };
    const first =
      after !== undefined
        ? await client.events({ ...filter, index: after, limit })
        : await recentEvents(client, filter, limit);
    const follow = boolFlag(args, 'follow');
    // Messages may carry text a task chose (an exit reason, a constraint's value).
    const shown = boolFlag(args, 'raw') ? (e: ClusterEvent) => e : (e: ClusterEvent) => printableDeep(e);
    if (!follow) {
      if (ctx.json) ctx.stdout.write(json(first));
      else if (first.events.length === 0) ctx.stdout.write('No events.\n');
      else ctx.stdout.write(formatEvents(first.events.map(shown), ctx.now(), ctx.color));
      return 0;
    }
    const print = (e: ClusterEvent) =>
      ctx.stdout.write(ctx.json ? `${JSON.stringify(e)}\n` : eventLine(shown(e), ctx.now()));
    if (!ctx.json) ctx.stdout.write(eventHeader(ctx.color));
    first.events.forEach(print);
    await followEvents(ctx, client, filter, first.index, print);
    return 0;
  },
};

/**
 * The last `limit` events. Indexes are store revisions, which move for other writes as well, so look
 * back over a window of revisions that grows until it holds enough events.
 */
async function recentEvents(
  client: UnumClient,
  filter: { namespace?: string; job?: string },
  limit: number,
): Promise<EventsPage> {
  const { revision } = await client.status();
  for (let span = limit * 4; ; span *= 4) {
    let from = Math.max(0, revision - span);
    const events: ClusterEvent[] = [];
    let index = from;
    for (;;) {
      let page: EventsPage;
      try {
        page = await client.events({ ...filter, index: from, limit: PAGE });
      } catch (err) {
        if (err instanceof CompactedError && err.compactRevision > from) {
          from = err.compactRevision;
          continue;
        }
        throw err;
      }
      events.push(...page.events);
      index = Math.max(index, page.index);
      if (page.events.length < PAGE) break;
      from = page.index;
    }
    if (events.length >= limit || revision - span <= 0) return { events: events.slice(-limit), index };
  }
}

/** Follows the event stream from `index`, reconnecting (from the last event seen) when it drops. */
async function followEvents(
  ctx: Context,
  client: UnumClient,
  filter: { namespace?: string; job?: string },
  index: number,
  print: (e: ClusterEvent) => void,
): Promise<void> {
  const signal = ctx.interrupted();
  let backoff = 500;
  let announced = false;
  while (!signal.aborted) {
    try {
      for await (const e of client.streamEvents({ ...filter, index }, signal)) {
        index = Math.max(index, e.index);
        if (announced) ctx.stderr.write('note: reconnected\n');
        announced = false;
        print(e);
        backoff = 500;
      }
      if (signal.aborted) return;
      // The server ended the stream (restart, failover): resume from the last event.
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof CompactedError) {
        ctx.stderr.write(`note: events up to ${err.compactRevision} were compacted; resuming after them\n`);
        index = Math.max(index, err.compactRevision);
        continue;
      }
      if (!(err instanceof UnavailableError)) throw err;
      if (!announced) ctx.stderr.write('note: lost the event stream (server restarting?); reconnecting...\n');
      announced = true;
    }
    try {
      await delay(backoff, undefined, { signal });
    } catch {
      return; // interrupted while waiting
    }
    backoff = Math.min(backoff * 2, 5_000);
  }
}

/** `job web`, `alloc 3f9a1c2e/server`, `node 1a2b3c4d`, `eval 5e6f7a8b`. */
export function eventObject(e: ClusterEvent): string {
  switch (e.topic) {
    case 'job':
      return e.jobId ? `job ${e.jobId}` : '-';
    case 'allocation':
      return e.allocId ? `alloc ${shortId(e.allocId)}` : '-';
    case 'task':
      return e.allocId ? `alloc ${shortId(e.allocId)}${e.task ? `/${e.task}` : ''}` : (e.task ?? '-');
    case 'node':
      return e.nodeId ? `node ${shortId(e.nodeId)}` : '-';
    case 'evaluation':
      return e.evalId ? `eval ${shortId(e.evalId)}` : '-';
    default:
      return '-';
  }
}

export function formatEvents(events: readonly ClusterEvent[], now: number, c: Colors): string {
  const rows = events.map((e) => [formatClock(e.time, now), e.topic, e.type, eventObject(e), withActor(e)]);
  return table(['TIME', 'TOPIC', 'TYPE', 'OBJECT', 'MESSAGE'], rows, { header: c.bold });
}

/** The message, and who made the change when the event says (the audit trail). */
function withActor(e: ClusterEvent): string {
  return e.actor !== undefined ? `${e.message} (by ${e.actor})` : e.message;
}

/** Followed events cannot be aligned on the widest cell, so they use fixed columns. */
const WIDTHS = [10, 12, 20, 24];

function fixed(cells: readonly string[]): string {
  return cells
    .map((cell, i) => {
      const w = WIDTHS[i];
      return w === undefined ? cell : cell + ' '.repeat(Math.max(1, w - visibleWidth(cell)));
    })
    .join('')
    .trimEnd();
}

function eventHeader(c: Colors): string {
  return `${c.bold(fixed(['TIME', 'TOPIC', 'TYPE', 'OBJECT', 'MESSAGE']))}\n`;
}

export function eventLine(e: ClusterEvent, now: number): string {
  return `${fixed([formatClock(e.time, now), e.topic, e.type, eventObject(e), withActor(e)])}\n`;
}
