/** `unum plan FILE`: what `unum run FILE` would change and where the scheduler would place it. */
import type { PlanJobResponse } from '../../api/types.ts';
import { InvalidError } from '../../core/errors.ts';
import { shortId } from '../../core/ids.ts';
import { Reported, UsageError, positionals, type Command } from '../context.ts';
import { readJobFile } from '../job-file.ts';
import { formatValue, json, plural, table, type Colors } from '../output.ts';
import { formatError } from '../report.ts';

export const planCommand: Command = {
  name: 'plan',
  summary: 'Dry run: show what submitting a job file would change and where it would run',
  usage: `Usage: unum plan FILE

Shows what "unum run FILE" would do, without doing it: the changes from the
job's current version (+ added, - removed, ~ changed, per field), the node each
new instance would be placed on, the instances that would stop, and the
instances that cannot be placed now (and why).

Flags:
  -n, --namespace NS   namespace (a job file may name its own)
  --json               print the plan as the API returns it

Examples:
  unum plan examples/web.yaml
  unum plan web.yaml --json | jq .diff
`,
  async run(args, ctx) {
    const [file = ''] = positionals(args, 1, 1, 'the job file');
    const doc = (await readJobFile(file)) as Record<string, unknown>;
    if (ctx.namespaceExplicit) {
      const own = doc['namespace'];
      if (own === undefined) doc['namespace'] = ctx.namespace;
      else if (own !== ctx.namespace)
        throw new UsageError(`${file} says namespace "${String(own)}" but -n says "${ctx.namespace}"`);
    }
    let plan: PlanJobResponse;
    try {
      plan = await ctx.client().planJob(doc);
    } catch (err) {
      if (err instanceof InvalidError) {
        ctx.stderr.write(formatError(err, `${file}: `));
        throw new Reported(1);
      }
      throw err;
    }
    ctx.stdout.write(ctx.json ? json(plan) : formatPlan(plan, ctx.color));
    return 0;
  },
};

const MARK = { added: '+', removed: '-', changed: '~' } as const;

/** The plan for people: diff, then placements, stops and failures. */
export function formatPlan(plan: PlanJobResponse, c: Colors): string {
  const { job } = plan;
  const out: string[] = [];
  if (plan.isNew)
    out.push(`${c.green('+')} new ${job.spec.type} job ${c.bold(job.id)} in namespace ${job.namespace}`);
  else if (plan.diff.length === 0) out.push(`job ${c.bold(job.id)}: no changes to the spec`);
  else {
    out.push(`job ${c.bold(job.id)}: ${plural(plan.diff.length, 'change')} from the current version:`);
    for (const d of plan.diff) {
      const mark = MARK[d.type];
      const color = d.type === 'added' ? c.green : d.type === 'removed' ? c.red : c.yellow;
      const value =
        d.type === 'added'
          ? formatValue(d.after)
          : d.type === 'removed'
            ? formatValue(d.before)
            : `${formatValue(d.before, 40)} => ${formatValue(d.after, 40)}`;
      out.push(`  ${color(mark)} ${d.path}: ${value}`);
    }
  }
  out.push('');
  if (plan.placements.length > 0) {
    out.push(`Would place ${plural(plan.placements.length, 'instance')}:`);
    const rows = plan.placements.map((p) => [
      p.name,
      p.nodeName || shortId(p.nodeId),
      shortId(p.nodeId),
      p.ports.map((x) => `${x.name}=${x.value}`).join(',') || '-',
    ]);
    out.push(indent(table(['INSTANCE', 'NODE', 'NODE ID', 'PORTS'], rows, { header: c.bold })));
  }
  if (plan.stops.length > 0) {
    out.push(`Would stop ${plural(plan.stops.length, 'instance')}:`);
    const rows = plan.stops.map((s) => [shortId(s.allocId), s.name, s.description]);
    out.push(indent(table(['ALLOC', 'INSTANCE', 'WHY'], rows, { header: c.bold })));
  }
  const failed = Object.entries(plan.failedGroups).filter(([, f]) => f.unplaced > 0);
  if (failed.length > 0) {
    for (const [group, f] of failed) {
      out.push(
        `${c.red(`${plural(f.unplaced, 'instance')} of group ${group} cannot be placed`)}: ${f.summary}`,
      );
      const reasons = [
        ...Object.entries(f.nodesFiltered).map(([k, n]) => `${k}: filtered ${plural(n, 'node')}`),
        ...Object.entries(f.nodesExhausted).map(([k, n]) => `${k} exhausted on ${plural(n, 'node')}`),
      ];
      for (const r of reasons) out.push(`    ${r}`);
      out.push(`    (${plural(f.nodesEvaluated, 'node')} evaluated)`);
    }
    out.push('');
  }
  if (plan.refused !== undefined) out.push(`${c.red('The plan would be refused now')}: ${plan.refused}`, '');
  if (plan.placements.length === 0 && plan.stops.length === 0 && failed.length === 0)
    out.push('No instances would start or stop.', '');
  return out.join('\n').replace(/\n+$/, '') + '\n';
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
}
