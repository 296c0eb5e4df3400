/**
 * `unum logs JOB[/TASK] | ALLOC[/TASK]`: the output of every instance of a job, each line tagged with
 * the allocation it came from. With -f it follows all of them at once and picks up new instances
 * (replacements after a crash, a scale-up) as they appear.
 */
import { isActive } from '../../core/alloc.ts';
import type { UnumClient } from '../../api/client.ts';
import { NotFoundError } from '../../core/errors.ts';
import type { Allocation, Job } from '../../core/types.ts';
import { UsageError, boolFlag, intFlag, positionals, type Command, type Context } from '../context.ts';
import { LineBuffer, LogMux, logTag, type LogSource } from '../log-lines.ts';
import { json } from '../output.ts';

type Stream = 'stdout' | 'stderr';

export const logsCommand: Command = {
  name: 'logs',
  summary: 'Show or follow the output of a job, a task or an allocation',
  usage: `Usage: unum logs JOB[/TASK] [-f] [--all] [--stdout | --stderr] [--tail N] [--no-prefix]
       unum logs ALLOC_ID[/TASK] [-f] ...

Prints the output (stdout and stderr) of every running instance of JOB, each
line tagged with its allocation: [3f9a1c2e web.web[0]]. TASK picks one task of
the group (default: every task). An allocation id (or a unique prefix, as "unum
ps" shows it) picks one instance. When no instance runs (a finished batch job),
the instances of the job's latest version are shown.

With -f, follows every instance at once, keeps lines whole, and picks up new
instances as they start (a replacement after a crash). Ctrl-C stops.

Flags:
  -f, --follow         keep printing new output
  --all                include finished instances
  --stdout             only stdout
  --stderr             only stderr
  --tail N             only the last N lines of each stream
  --no-prefix          print lines without the allocation tag
  --raw                print output exactly as written, terminal escape
                       sequences included (default: control characters
                       other than tab are shown as \\x1b-style escapes)
  -n, --namespace NS   namespace of JOB (default: default)
  --json               one object per line: { allocId, name, task, stream, line }
                       (without -f: one document { lines: [...] })

Examples:
  unum logs web
  unum logs web -f
  unum logs web/server --stderr --tail 50
  unum logs 3f9a1c2e -f
`,
  flags: {
    follow: { type: 'boolean', short: 'f' },
    all: { type: 'boolean' },
    stdout: { type: 'boolean' },
    stderr: { type: 'boolean' },
    tail: { type: 'string' },
    'no-prefix': { type: 'boolean' },
    raw: { type: 'boolean' },
  },
  async run(args, ctx) {
    const [ref = ''] = positionals(args, 1, 1, 'the job or allocation: unum logs JOB[/TASK]');
    const tail = intFlag(args, 'tail', 0);
    const onlyOut = boolFlag(args, 'stdout');
    const onlyErr = boolFlag(args, 'stderr');
    const streams: Stream[] = onlyOut === onlyErr ? ['stdout', 'stderr'] : onlyOut ? ['stdout'] : ['stderr'];
    const client = ctx.client();
    const target = await resolveTarget(client, ref, ctx.namespace);
    const follow = boolFlag(args, 'follow');
    const all = boolFlag(args, 'all');

    let initial: Allocation[];
    let index = 0;
    let total = 1;
    if (target.kind === 'alloc') initial = [target.alloc];
    else {
      const listed = await client.jobAllocations(target.job.id, { namespace: target.job.namespace });
      index = listed.index;
      total = listed.items.length;
      initial = selectAllocations(listed.items, all);
    }
    const withTask =
      target.task === undefined ? initial : initial.filter((a) => hasTask(a, target.task ?? ''));
    if (target.task !== undefined && target.kind === 'job') checkTask(target.job, target.task);
    if (target.task !== undefined && target.kind === 'alloc' && withTask.length === 0)
      throw new NotFoundError(
        `allocation ${target.alloc.name} has no task "${target.task}" (tasks: ${taskNames(target.alloc).join(', ')})`,
      );
    const singleSource = target.kind === 'alloc' && tasksOf(target.alloc, target.task).length === 1;
    const out = new LogOutput(ctx, {
      prefix: !boolFlag(args, 'no-prefix') && !singleSource,
      ndjson: follow,
      raw: boolFlag(args, 'raw'),
    });

    if (!follow) {
      if (withTask.length === 0 && !ctx.json)
        ctx.stderr.write(
          total === 0
            ? `${ref}: no instances yet ("unum status ${ref.split('/')[0] ?? ref}" shows why)\n`
            : `${ref}: no instances with this task\n`,
        );
      let failures = 0;
      for (const alloc of withTask)
        for (const task of tasksOf(alloc, target.task))
          for (const stream of streams)
            if (
              !(await pump(client, out.source(alloc, task, stream), alloc, task, stream, {
                follow: false,
                tail,
              }))
            )
              failures++;
      out.close();
      return failures > 0 ? 1 : 0;
    }

    const interrupted = ctx.interrupted();
    // Ends every stream when we stop following, for whatever reason.
    const stopAll = new AbortController();
    const signal = AbortSignal.any([interrupted, stopAll.signal]);
    const followed = new Set<string>();
    const pumps = new Set<Promise<boolean>>();
    let wake = new AbortController();
    const start = (alloc: Allocation, fromTail: number | undefined) => {
      followed.add(alloc.id);
      for (const task of tasksOf(alloc, target.task))
        for (const stream of streams) {
          const p = pump(client, out.source(alloc, task, stream), alloc, task, stream, {
            follow: true,
            tail: fromTail,
            signal,
          });
          pumps.add(p);
          void p.finally(() => {
            pumps.delete(p);
            if (pumps.size === 0) wake.abort();
          });
        }
    };
    try {
      for (const alloc of withTask) start(alloc, tail);
      if (target.kind === 'job') {
        const { job } = target;
        while (!interrupted.aborted) {
          if (wake.signal.aborted) wake = new AbortController();
          if (pumps.size === 0) {
            // Nothing to follow now: done if the job will start nothing more.
            const detail = await client.getJob(job.id, { namespace: job.namespace });
            if (detail.job.status === 'complete' || detail.job.status === 'dead') break;
          }
          let listed;
          try {
            listed = await client.jobAllocations(
              job.id,
              { namespace: job.namespace, index, waitMs: 30_000 },
              AbortSignal.any([interrupted, wake.signal]),
            );
          } catch (err) {
            if (interrupted.aborted || wake.signal.aborted) continue;
            throw err;
          }
          index = listed.index;
          for (const alloc of listed.items)
            if (!followed.has(alloc.id) && (isActive(alloc) || all) && hasTask(alloc, target.task))
              start(alloc, undefined); // a new instance: all of its output
        }
      }
      await Promise.all(pumps);
    } finally {
      stopAll.abort();
      out.close();
    }
    return 0;
  },
};

type Target = { kind: 'job'; job: Job; task?: string } | { kind: 'alloc'; alloc: Allocation; task?: string };

/** `web`, `web/server`, `3f9a1c2e`, `3f9a1c2e/server`: a job first, else an allocation id prefix. */
async function resolveTarget(client: UnumClient, ref: string, namespace: string): Promise<Target> {
  const slash = ref.indexOf('/');
  const name = slash >= 0 ? ref.slice(0, slash) : ref;
  const task = slash >= 0 ? ref.slice(slash + 1) : undefined;
  if (name === '' || task === '') throw new UsageError(`expected JOB, JOB/TASK or ALLOC_ID, got "${ref}"`);
  const withTask = <T extends object>(t: T) => (task === undefined ? t : { ...t, task });
  try {
    const detail = await client.getJob(name, { namespace });
    return withTask({ kind: 'job' as const, job: detail.job });
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  try {
    return withTask({ kind: 'alloc' as const, alloc: await client.getAllocation(name) });
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  throw new NotFoundError(
    `no job "${name}" in namespace ${namespace}, and no allocation whose id starts with "${name}"`,
  );
}

/** Running instances; with `all` every one; when none runs, the latest version's (a finished batch job). */
export function selectAllocations(allocs: readonly Allocation[], all: boolean): Allocation[] {
  const byName = (a: Allocation, b: Allocation) =>
    a.group === b.group ? a.index - b.index || a.createdAt - b.createdAt : a.group < b.group ? -1 : 1;
  if (all) return [...allocs].sort(byName);
  const live = allocs.filter(isActive);
  if (live.length > 0) return live.sort(byName);
  const latest = Math.max(...allocs.map((a) => a.jobVersion));
  return allocs.filter((a) => a.jobVersion === latest).sort(byName);
}

function taskNames(alloc: Allocation): string[] {
  return alloc.groupSpec.tasks.map((t) => t.name);
}

function tasksOf(alloc: Allocation, task: string | undefined): string[] {
  const names = taskNames(alloc);
  return task === undefined ? names : names.filter((n) => n === task);
}

function hasTask(alloc: Allocation, task: string | undefined): boolean {
  return task === undefined || taskNames(alloc).includes(task);
}

function checkTask(job: Job, task: string): void {
  const all = job.spec.groups.flatMap((g) => g.tasks.map((t) => t.name));
  if (!all.includes(task))
    throw new NotFoundError(`job ${job.id} has no task "${task}" (tasks: ${[...new Set(all)].join(', ')})`);
}

/** Copies one log stream into `sink`; false (after saying why on stderr) when it could not be read. */
async function pump(
  client: UnumClient,
  sink: LogSource & { fail(message: string): void },
  alloc: Allocation,
  task: string,
  stream: Stream,
  options: { follow: boolean; tail: number | undefined; signal?: AbortSignal },
): Promise<boolean> {
  try {
    const q = {
      task,
      stream,
      follow: options.follow,
      ...(options.tail !== undefined ? { tail: options.tail } : {}),
    };
    for await (const chunk of client.allocLogs(alloc.id, q, options.signal)) sink.push(chunk);
    sink.end();
    return true;
  } catch (err) {
    sink.end();
    if (options.signal?.aborted) return true;
    sink.fail(`cannot read ${stream} of ${alloc.name} task ${task}: ${(err as Error).message}`);
    return false;
  }
}

/** Where log lines go: tagged text, or JSON (one object per line when following, one document otherwise). */
class LogOutput {
  private readonly mux: LogMux;
  private readonly ctx: Context;
  private readonly ndjson: boolean;
  private readonly collected: {
    allocId: string;
    name: string;
    task: string;
    stream: Stream;
    line: string;
  }[] = [];
  private readonly keys = new Map<string, number>();

  constructor(ctx: Context, options: { prefix: boolean; ndjson: boolean; raw: boolean }) {
    this.ctx = ctx;
    this.ndjson = options.ndjson;
    this.mux = new LogMux({
      prefix: options.prefix,
      raw: options.raw,
      write: (text) => ctx.stdout.write(text),
      style: (n, tag) => ctx.color.cycle(n, tag),
    });
  }

  source(alloc: Allocation, task: string, stream: Stream): LogSource & { fail(message: string): void } {
    const tag = logTag(alloc, task, alloc.groupSpec.tasks.length);
    const fail = (message: string) => this.ctx.stderr.write(`[${tag}] ${message}\n`);
    if (!this.ctx.json) {
      if (!this.keys.has(alloc.id)) this.keys.set(alloc.id, this.keys.size);
      return { ...this.mux.source(tag, this.keys.get(alloc.id)), fail };
    }
    const buffer = new LineBuffer();
    const emit = (line: string) => {
      const record = { allocId: alloc.id, name: alloc.name, task, stream, line };
      if (this.ndjson) this.ctx.stdout.write(`${JSON.stringify(record)}\n`);
      else this.collected.push(record);
    };
    return {
      push: (chunk) => buffer.push(chunk).forEach(emit),
      end: () => {
        const last = buffer.flush();
        if (last !== undefined) emit(last);
      },
      fail,
    };
  }

  close(): void {
    if (this.ctx.json && !this.ndjson) this.ctx.stdout.write(json({ lines: this.collected }));
  }
}
