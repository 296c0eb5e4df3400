/**
 * `unum run FILE`: submit or update a job and follow its rollout until it is done or has failed.
 * `unum run -- CMD ARGS...`: a one-off batch job around one command.
 */
import type { SubmitJobResponse } from '../../api/types.ts';
import { parseDuration } from '../../core/duration.ts';
import { InvalidError } from '../../core/errors.ts';
import { isValidName, randomSuffix, shortId } from '../../core/ids.ts';
import type { Job } from '../../core/types.ts';
import {
  Reported,
  UsageError,
  boolFlag,
  intFlag,
  positionals,
  stringFlag,
  type Args,
  type Command,
  type Context,
} from '../context.ts';
import { followRollout, type RolloutResult } from '../follow.ts';
import { readJobFile } from '../job-file.ts';
import { formatClock, formatDuration, json, plural } from '../output.ts';
import { Progress } from '../progress.ts';
import { formatError } from '../report.ts';

const DEFAULT_TIMEOUT_MS = 5 * 60_000;

export const runCommand: Command = {
  name: 'run',
  summary: 'Submit or update a job from a file and follow its rollout; or run a one-off command',
  usage: `Usage: unum run FILE [--detach] [--timeout DURATION]
       unum run [--name NAME] [--cpu MILLICORES] [--memory MIB] [--detach] -- CMD [ARGS...]

unum run FILE submits the job in FILE (YAML or JSON; "-" reads stdin) or updates it,
then follows the rollout: it returns when every instance of the new version runs
(and is healthy, when the job has health checks), or for a batch job when every
instance completed. It exits non-zero when an instance fails, when instances
cannot be placed, or when --timeout passes. The job goes on either way.

unum run -- CMD ARGS... runs one command once, as a batch job named run-XXXXXXXX:
it prints the job id, waits for the command to finish and exits non-zero if it failed.

Flags:
  --detach             submit and return at once
  --timeout DURATION   how long to follow the rollout (default: 5m)
  --name NAME          job id for a one-off command (default: run-<random>)
  --cpu MILLICORES     CPU for a one-off command (1000 = one core; default 100)
  --memory MIB         memory for a one-off command (default 256)
  -n, --namespace NS   namespace (a job file may name its own)
  --json               print the submitted job and the outcome as JSON

Examples:
  unum run examples/web.yaml
  unum run examples/batch.yaml --timeout 10m
  unum run -- python3 -c 'print("hello from the cluster")'
  unum run --detach --name nightly --cpu 2000 -- ./backup.sh /data
`,
  flags: {
    detach: { type: 'boolean' },
    timeout: { type: 'string' },
    name: { type: 'string' },
    cpu: { type: 'string' },
    memory: { type: 'string' },
  },
  rest: true,
  async run(args, ctx) {
    const timeoutMs = timeoutFlag(args);
    if (args.rest !== undefined) return runCommandLine(args, ctx, timeoutMs);
    for (const f of ['name', 'cpu', 'memory'])
      if (args.flags[f] !== undefined)
        throw new UsageError(`--${f} is for "unum run -- CMD": a job file says it itself`);
    const [file] = positionals(args, 1, 1, 'the job file: unum run FILE, or unum run -- CMD ARGS');
    const doc = (await readJobFile(file ?? '')) as Record<string, unknown>;
    if (ctx.namespaceExplicit) {
      const own = doc['namespace'];
      if (own === undefined) doc['namespace'] = ctx.namespace;
      else if (own !== ctx.namespace)
        throw new UsageError(`${file} says namespace "${String(own)}" but -n says "${ctx.namespace}"`);
    }
    const submitted = await submit(ctx, doc, file ?? '');
    const { job } = submitted;
    if (!submitted.changed) {
      if (ctx.json) ctx.stdout.write(json(submitted));
      else
        ctx.stdout.write(
          `${job.id}: unchanged (version ${job.version}), nothing to do. See "unum status ${job.id}".\n`,
        );
      return 0;
    }
    if (boolFlag(args, 'detach')) {
      if (ctx.json) ctx.stdout.write(json(submitted));
      else
        ctx.stdout.write(
          `${job.id}: submitted version ${job.version}. Follow it with "unum status ${jobRef(ctx, job)}".\n`,
        );
      return 0;
    }
    if (!ctx.json) ctx.stderr.write(`${job.id}: submitted version ${job.version}\n`);
    const progress = new Progress(ctx.stderr, !ctx.json);
    const result = await followRollout(ctx, submitted, { timeoutMs, progress });
    progress.done();
    return finish(ctx, submitted, result, timeoutMs);
  },
};

async function submit(ctx: Context, doc: unknown, file: string): Promise<SubmitJobResponse> {
  try {
    return await ctx.client().submitJob(doc);
  } catch (err) {
    if (err instanceof InvalidError) {
      ctx.stderr.write(formatError(err, file ? `${file}: ` : ''));
      throw new Reported(1);
    }
    throw err;
  }
}

function timeoutFlag(args: Args): number {
  const raw = stringFlag(args, 'timeout');
  if (raw === undefined) return DEFAULT_TIMEOUT_MS;
  const ms = parseDuration(raw);
  if (ms === undefined || ms <= 0)
    throw new UsageError(`--timeout expects a duration like "30s" or "10m", got "${raw}"`);
  return ms;
}

/** `unum status web` or, outside the default namespace, `unum status -n prod web`. */
function jobRef(_ctx: Context, job: Pick<Job, 'id' | 'namespace'>): string {
  return job.namespace === 'default' ? job.id : `-n ${job.namespace} ${job.id}`;
}

/** A task name from the command: `/usr/bin/python3` → `python3`; `main` when nothing usable is left. */
export function taskNameFor(command: string): string {
  const base = (command.split('/').pop() ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '')
    .slice(0, 64);
  return isValidName(base) ? base : 'main';
}

/** The job document of a one-off command: one batch instance that runs once (no restarts, no reschedules). */
export function commandLineJob(options: {
  id: string;
  namespace: string;
  command: string;
  args: string[];
  cpu?: number | undefined;
  memory?: number | undefined;
}): Record<string, unknown> {
  const name = taskNameFor(options.command);
  const resources: Record<string, number> = {};
  if (options.cpu !== undefined) resources['cpu'] = options.cpu;
  if (options.memory !== undefined) resources['memory'] = options.memory;
  return {
    job: options.id,
    namespace: options.namespace,
    type: 'batch',
    groups: [
      {
        name,
        count: 1,
        restart: { attempts: 0 },
        reschedule: { attempts: 0 },
        tasks: [
          {
            name,
            command: options.command,
            args: options.args,
            ...(Object.keys(resources).length ? { resources } : {}),
          },
        ],
      },
    ],
  };
}

async function runCommandLine(args: Args, ctx: Context, timeoutMs: number): Promise<number> {
  if (args.positionals.length > 0)
    throw new UsageError(
      `give either a job file or "-- CMD ARGS", not both (found "${args.positionals[0] ?? ''}" before --)`,
    );
  const [command, ...rest] = args.rest ?? [];
  if (command === undefined || command === '') throw new UsageError('missing the command to run after --');
  const name = stringFlag(args, 'name');
  if (name !== undefined && !isValidName(name))
    throw new UsageError(
      `--name "${name}" is not a valid job name (lower-case letters, digits, '-', '_' or '.')`,
    );
  const id = name ?? `run-${randomSuffix()}`;
  const doc = commandLineJob({
    id,
    namespace: ctx.namespace,
    command,
    args: rest,
    cpu: intFlag(args, 'cpu', 1),
    memory: intFlag(args, 'memory', 1),
  });
  const submitted = await submit(ctx, doc, '');
  const { job } = submitted;
  if (!ctx.json) ctx.stdout.write(`${job.id}\n`);
  if (boolFlag(args, 'detach')) {
    if (ctx.json) ctx.stdout.write(json(submitted));
    else ctx.stdout.write(`logs: unum logs ${jobRef(ctx, job)}\n`);
    return 0;
  }
  const progress = new Progress(ctx.stderr, !ctx.json);
  const result = await followRollout(ctx, submitted, { timeoutMs, progress });
  progress.done();
  const code = finish(ctx, submitted, result, timeoutMs);
  if (!ctx.json) ctx.stdout.write(`logs: unum logs ${jobRef(ctx, job)}\n`);
  return code;
}

/** Says how the rollout ended and returns the exit code. */
function finish(
  ctx: Context,
  submitted: SubmitJobResponse,
  result: RolloutResult,
  timeoutMs: number,
): number {
  const { job } = submitted;
  const { outcome, state } = result;
  const ok = outcome.status === 'succeeded';
  const code = ok ? 0 : outcome.status === 'interrupted' ? 130 : 1;
  if (ctx.json) {
    ctx.stdout.write(json({ ...submitted, outcome, allocations: result.allocations }));
    return code;
  }
  const c = ctx.colorErr;
  const ref = jobRef(ctx, job);
  const v = `${job.id} v${job.version}`;
  switch (outcome.status) {
    case 'succeeded': {
      const n = plural(state.counts.desired, 'instance');
      if (job.spec.type === 'batch') ctx.stdout.write(`${v}: complete (${n})\n`);
      else
        ctx.stdout.write(
          `${v}: running, ${n}${state.counts.checked ? ', healthy' : ''}. See "unum status ${ref}".\n`,
        );
      break;
    }
    case 'failed': {
      const f = state.failed;
      if (!f) break;
      const a = f.alloc;
      const why = a.clientDescription ? `: ${a.clientDescription}` : '';
      ctx.stderr.write(
        `${c.red('error:')} ${v} failed: instance ${a.name} (alloc ${shortId(a.id)}) failed on node ${shortId(a.nodeId)}${why}\n`,
      );
      if (f.event)
        ctx.stderr.write(
          `  task ${f.task ?? '?'} at ${formatClock(f.event.time, ctx.now())}: ${f.event.type}: ${f.event.message}\n`,
        );
      ctx.stderr.write(
        `  see: unum status ${ref}; unum logs ${shortId(a.id)}${job.namespace === 'default' ? '' : ` -n ${job.namespace}`}\n`,
      );
      break;
    }
    case 'unplaceable': {
      const failures = Object.entries(outcome.failures);
      const total = failures.reduce((n, [, f]) => n + f.unplaced, 0);
      ctx.stderr.write(`${c.red('error:')} ${v}: ${plural(total, 'instance')} cannot be placed:\n`);
      for (const [group, f] of failures)
        ctx.stderr.write(
          `  ${failures.length > 1 ? `group ${group} (${plural(f.unplaced, 'instance')})` : `group ${group}`}: ${f.summary}\n`,
        );
      ctx.stderr.write(`The job stays pending; "unum status ${ref}" shows why.\n`);
      break;
    }
    case 'timeout':
      ctx.stderr.write(
        `${c.red('error:')} timed out after ${formatDuration(timeoutMs)} (${state.line}); the rollout goes on: unum status ${ref}\n`,
      );
      break;
    case 'interrupted':
      ctx.stderr.write(`stopped following ${v}; the job goes on: unum status ${ref}\n`);
      break;
    case 'superseded':
      ctx.stderr.write(`${c.red('error:')} ${outcome.message}; see "unum status ${ref}"\n`);
      break;
    case 'eval-failed':
      ctx.stderr.write(`${c.red('error:')} the scheduler could not process ${v}: ${outcome.message}\n`);
      break;
  }
  return code;
}
