/** `unum stop JOB`: stop every instance of a job, and wait until none runs. */
import { parseDuration } from '../../core/duration.ts';
import { UsageError, boolFlag, positionals, stringFlag, type Command } from '../context.ts';
import { followStop } from '../follow.ts';
import { formatDuration, json } from '../output.ts';
import { Progress } from '../progress.ts';

export const stopCommand: Command = {
  name: 'stop',
  summary: 'Stop a job: every instance stops (and --purge forgets the job)',
  usage: `Usage: unum stop JOB [--purge] [--detach] [--timeout DURATION]

Marks the job stopped, so every instance stops (tasks get their kill signal,
then SIGKILL after their kill timeout), then waits until none runs.
The job stays visible in "unum status" unless --purge removes it.
"unum run FILE" starts it again.

Flags:
  --purge              also remove the job and its history
  --detach             return once the stop is recorded, without waiting
  --timeout DURATION   how long to wait (default: 5m)
  -n, --namespace NS   namespace (default: default)
  --json               print the API's answer ({ evalId }) as JSON

Examples:
  unum stop web
  unum stop -n prod api --purge
`,
  flags: { purge: { type: 'boolean' }, detach: { type: 'boolean' }, timeout: { type: 'string' } },
  async run(args, ctx) {
    const [jobId = ''] = positionals(args, 1, 1, 'the job to stop');
    const rawTimeout = stringFlag(args, 'timeout');
    const timeoutMs = rawTimeout === undefined ? 5 * 60_000 : parseDuration(rawTimeout);
    if (timeoutMs === undefined || timeoutMs <= 0)
      throw new UsageError(`--timeout expects a duration like "30s" or "10m", got "${rawTimeout ?? ''}"`);
    const purge = boolFlag(args, 'purge');
    const client = ctx.client();
    const result = await client.stopJob(jobId, { namespace: ctx.namespace, ...(purge ? { purge } : {}) });
    const job = { id: jobId, namespace: ctx.namespace };
    if (boolFlag(args, 'detach')) {
      ctx.stdout.write(ctx.json ? json(result) : `${jobId}: stopping${purge ? ' (and purging)' : ''}\n`);
      return 0;
    }
    const progress = new Progress(ctx.stderr, !ctx.json);
    const outcome = await followStop(ctx, job, { timeoutMs, progress });
    progress.done();
    if (ctx.json) ctx.stdout.write(json({ ...result, outcome }));
    else if (outcome === 'stopped') ctx.stdout.write(`${jobId}: stopped${purge ? ' and purged' : ''}\n`);
    else if (outcome === 'interrupted')
      ctx.stderr.write(`stopped waiting; ${jobId} is still stopping: unum status ${jobId}\n`);
    else
      ctx.stderr.write(
        `error: ${jobId} still has running instances after ${formatDuration(timeoutMs)}: unum status ${jobId}\n`,
      );
    return outcome === 'stopped' ? 0 : outcome === 'interrupted' ? 130 : 1;
  },
};
