/** `unum status [JOB]`: the jobs of a namespace, or one job in detail (and why it is pending). */
import { holdsResources } from '../../core/alloc.ts';
import type { JobDetail, JobListItem, ServersStatus } from '../../api/types.ts';
import { shortId } from '../../core/ids.ts';
import type { Allocation, Job } from '../../core/types.ts';
import { boolFlag, positionals, type Command } from '../context.ts';
import { nodeDirectory, nodeLabel, sortAllocations } from '../lookup.ts';
import {
  allocRestarts,
  allocStatus,
  formatAge,
  formatAgo,
  formatClock,
  formatPorts,
  json,
  keyValues,
  plural,
  printableDeep,
  statusColor,
  table,
  type Colors,
} from '../output.ts';

/** Finished allocations shown in the detail view (all of them are in --json). */
const FINISHED_SHOWN = 10;
/** Task events shown in the detail view, most recent last. */
const EVENTS_SHOWN = 20;
const EVENTS_PER_TASK = 3;

export const statusCommand: Command = {
  name: 'status',
  summary: "List jobs, or show one job: its instances, why it is pending, its tasks' recent events",
  usage: `Usage: unum status [JOB]
       unum status --servers

Without JOB: the jobs of the namespace (ID, TYPE, STATUS, RUNNING/DESIRED,
VERSION, SUBMITTED).

With JOB: the job (type, priority, version, status), its instance counts, why
instances are pending (placement failures), its allocations (where each runs,
status, ports, restarts), and the latest task events of each allocation, so
that a restart and its cause are visible.

With --servers: the servers of the cluster that answer now (the leader first),
their addresses and how long each has run, and the state of the Store (backend,
revision) as the server asked sees it.

Flags:
  --servers            the servers, the leader and the Store instead of jobs
  -n, --namespace NS   namespace (default: default)
  --json               without JOB: the job list; with JOB: the job detail
                       (spec with every default applied) plus its allocations
  --raw                print stored messages exactly as they are, terminal
                       escape sequences included (default: control characters
                       are shown as \\x1b-style escapes)

Examples:
  unum status
  unum status web
  unum status -n prod api --json
  unum status --servers
`,
  flags: { raw: { type: 'boolean' }, servers: { type: 'boolean' } },
  async run(args, ctx) {
    const [jobId] = positionals(args, 0, 1, '');
    const client = ctx.client();
    const now = ctx.now();
    if (boolFlag(args, 'servers')) {
      const s = await client.servers();
      ctx.stdout.write(ctx.json ? json(s) : formatServers(printableDeep(s), now, ctx.color));
      return 0;
    }
    // Task events, descriptions and placement reasons carry text a task or a job file chose.
    const raw = boolFlag(args, 'raw');
    const shown = <T>(v: T): T => (raw ? v : printableDeep(v));
    if (jobId === undefined) {
      const jobs = await client.listJobs({ namespace: ctx.namespace });
      if (ctx.json) ctx.stdout.write(json(jobs));
      else if (jobs.items.length === 0)
        ctx.stdout.write(`No jobs in namespace ${ctx.namespace}. Start one: unum run examples/web.yaml\n`);
      else ctx.stdout.write(formatJobList(shown(jobs.items), now, ctx.color));
      return 0;
    }
    const [detail, allocs, { names, hosts }] = await Promise.all([
      client.getJob(jobId, { namespace: ctx.namespace }),
      client.jobAllocations(jobId, { namespace: ctx.namespace }),
      nodeDirectory(client),
    ]);
    if (ctx.json) ctx.stdout.write(json({ ...detail, allocations: allocs.items }));
    else {
      const nodes = new Map([...names].map(([id, name]) => [id, shown(name)]));
      ctx.stdout.write(formatJobDetail(shown(detail), shown(allocs.items), nodes, now, ctx.color, hosts));
    }
    return 0;
  },
};

function jobStatus(job: Job): string {
  return job.stop && job.status !== 'dead' ? 'stopping' : job.status;
}

export function formatJobList(items: readonly JobListItem[], now: number, c: Colors): string {
  const rows = [...items]
    .sort((a, b) => (a.job.id < b.job.id ? -1 : 1))
    .map(({ job, summary }) => [
      job.id,
      job.spec.type,
      statusColor(c, jobStatus(job)),
      `${summary.running}/${summary.desired}`,
      String(job.version),
      formatAgo(job.submittedAt, now),
    ]);
  return table(['ID', 'TYPE', 'STATUS', 'RUNNING/DESIRED', 'VERSION', 'SUBMITTED'], rows, {
    align: ['left', 'left', 'left', 'right', 'right', 'left'],
    header: c.bold,
  });
}

export function formatJobDetail(
  detail: JobDetail,
  allocations: readonly Allocation[],
  names: ReadonlyMap<string, string>,
  now: number,
  c: Colors,
  hosts: ReadonlyMap<string, string> = new Map(),
): string {
  const { job, summary } = detail;
  const out: string[] = [];
  out.push(
    keyValues([
      ['ID', c.bold(job.id)],
      ['Namespace', job.namespace],
      ['Type', job.spec.type],
      ['Priority', String(job.spec.priority)],
      ['Version', String(job.version)],
      ['Status', statusColor(c, jobStatus(job))],
      ['Submitted', `${formatAgo(job.submittedAt, now)} (${formatClock(job.submittedAt, now)})`],
    ]),
  );
  out.push(
    `Instances: ${summary.desired} desired, ${summary.running} running, ${summary.pending} pending, ` +
      `${summary.complete} complete, ${summary.failed} failed, ${summary.lost} lost\n`,
  );
  const failures = Object.entries(detail.placementFailures).filter(([, f]) => f.unplaced > 0);
  if (failures.length > 0) {
    out.push(c.red('Pending:'));
    for (const [group, f] of failures)
      out.push(`  ${plural(f.unplaced, 'instance')} cannot be placed (group ${group}): ${f.summary}`);
    out.push('');
  }

  const sorted = sortAllocations(allocations);
  const live = sorted.filter(holdsResources);
  const finished = sorted.filter((a) => !holdsResources(a));
  const shown = [...live, ...finished.slice(0, FINISHED_SHOWN)];
  if (shown.length === 0) out.push('No allocations.\n');
  else {
    out.push(c.bold('Allocations'));
    const rows = shown.map((a) => [
      shortId(a.id),
      a.name,
      nodeLabel(names, a.nodeId),
      statusColor(c, allocStatus(a)),
      a.desiredStatus,
      String(a.jobVersion),
      formatPorts(a, hosts.get(a.nodeId)),
      String(allocRestarts(a)),
      formatAge(a.createdAt, now),
    ]);
    out.push(
      table(['ID', 'NAME', 'NODE', 'STATUS', 'DESIRED', 'VERSION', 'PORTS', 'RESTARTS', 'AGE'], rows, {
        align: ['left', 'left', 'left', 'left', 'left', 'right', 'left', 'right', 'left'],
        header: c.bold,
      }),
    );
    const hidden = finished.length - FINISHED_SHOWN;
    if (hidden > 0)
      out.push(`(${plural(hidden, 'older finished allocation')} not shown; --json has them all)\n`);
  }

  const events = recentTaskEvents(shown);
  if (events.length > 0) {
    out.push(c.bold('Recent task events'));
    const rows = events.map((e) => [formatClock(e.time, now), shortId(e.allocId), e.task, e.type, e.message]);
    out.push(table(['TIME', 'ALLOC', 'TASK', 'TYPE', 'MESSAGE'], rows, { header: c.bold }));
  }
  return out.join('\n').replace(/\n+$/, '') + '\n';
}

interface FlatEvent {
  time: number;
  allocId: string;
  task: string;
  type: string;
  message: string;
}

/** The last few events of every task of these allocations, oldest first. */
export function recentTaskEvents(allocations: readonly Allocation[], limit = EVENTS_SHOWN): FlatEvent[] {
  const all: FlatEvent[] = [];
  for (const a of allocations)
    for (const [task, state] of Object.entries(a.taskStates))
      for (const e of state.events.slice(-EVENTS_PER_TASK))
        all.push({ time: e.time, allocId: a.id, task, type: e.type, message: e.message });
  return all.sort((x, y) => x.time - y.time).slice(-limit);
}

function formatServers(s: ServersStatus, now: number, c: Colors): string {
  const rows = s.servers.map((x) => [
    shortId(x.id),
    x.addr,
    x.leader ? c.green('leader') : 'follower',
    formatAge(x.startedAt, now),
  ]);
  let out =
    rows.length === 0
      ? 'No server answers.\n'
      : table(['ID', 'ADDRESS', 'ROLE', 'UP'], rows, { header: c.bold });
  if (s.leader === undefined) out += `${c.yellow('No leader right now')} (an election is under way).\n`;
  out +=
    'error' in s.store
      ? `Store: ${c.red('unreachable')}: ${s.store.error}\n`
      : `Store: ${s.store.backend}, revision ${s.store.revision}${s.store.compactRevision > 0 ? `, history from revision ${s.store.compactRevision}` : ''}\n`;
  return out;
}
