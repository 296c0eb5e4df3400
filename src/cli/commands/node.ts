/** `unum node drain|eligible|ineligible NODE`: take a machine out of service, and back. */
import { DEFAULT_DRAIN_DEADLINE_MS, drainDeadline } from '../../api/schemas.ts';
import { eligibilityOf } from '../../core/node.ts';
import type { Node } from '../../core/types.ts';
import { UsageError, boolFlag, stringFlag, type Args, type Command, type Context } from '../context.ts';
import { followDrain } from '../follow.ts';
import { formatDuration, json } from '../output.ts';
import { Progress } from '../progress.ts';

const USAGE = `Usage: unum node drain NODE [--deadline DURATION] [--detach]
       unum node drain NODE --cancel
       unum node drain NODE --monitor
       unum node eligible NODE
       unum node ineligible NODE

Maintenance of one machine. NODE is a node's name, id, or id prefix (see "unum nodes").

  drain NODE     move the node's allocations to other nodes, then leave it ineligible
                 (nothing new is placed there) until "unum node eligible". A group moves
                 migrate.maxParallel instances at a time (default 1), each batch once its
                 replacements run and pass their checks; an instance with no room elsewhere
                 stays until the deadline. Batch allocations run on until they end. At the
                 deadline whatever is left is stopped (and placed elsewhere when room appears).
                 Shows progress until the node is empty; Ctrl-C stops following, not the drain.
  eligible NODE  new work may be placed there again; ends a drain under way
  ineligible NODE
                 nothing new is placed there; what runs there keeps running

Flags:
  --deadline DURATION   how long allocations have to move before the rest is stopped
                        (default ${formatDuration(DEFAULT_DRAIN_DEADLINE_MS)}; "0s" stops everything now; a new
                        deadline for a drain under way replaces the old one)
  --cancel              stop draining: the node is eligible again; moves already
                        under way finish, the rest stays
  --monitor             follow a drain under way without changing it
  --detach              start the drain and return at once
  --json                the node as the API answers it (with --detach or --cancel), or
                        { node, outcome } once the drain is over

Examples:
  unum node drain vm3                    # before a reboot: wait until vm3 is empty
  unum node drain vm3 --deadline 10m --detach
  unum node drain vm3 --monitor
  unum node eligible vm3                 # back in service
  unum node ineligible vm4               # no new work on vm4; what runs stays
`;

export const nodeCommand: Command = {
  name: 'node',
  summary: 'Drain a node, or make it (in)eligible for new work',
  usage: USAGE,
  flags: {
    deadline: { type: 'string' },
    cancel: { type: 'boolean' },
    monitor: { type: 'boolean' },
    detach: { type: 'boolean' },
  },
  async run(args, ctx) {
    const [action, nodeName, ...extra] = args.positionals;
    if (action === undefined)
      throw new UsageError(
        'unum node needs a subcommand: drain, eligible or ineligible (see unum node --help)',
      );
    if (!['drain', 'eligible', 'ineligible'].includes(action))
      throw new UsageError(`unknown subcommand "unum node ${action}" (see unum node --help)`);
    if (nodeName === undefined) throw new UsageError(`missing the node: unum node ${action} NODE`);
    if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0] ?? ''}"`);
    if (action === 'drain') return drain(args, ctx, nodeName);
    for (const flag of ['deadline', 'cancel', 'monitor', 'detach'])
      if (args.flags[flag] !== undefined) throw new UsageError(`--${flag} is for "unum node drain"`);
    const node = await ctx.client().setNodeEligibility(nodeName, action === 'eligible');
    ctx.stdout.write(
      ctx.json
        ? json(node)
        : action === 'eligible'
          ? `node ${node.name} is eligible: new work may be placed there\n`
          : `node ${node.name} is ineligible: nothing new is placed there; what runs there stays\n`,
    );
    return 0;
  },
};

async function drain(args: Args, ctx: Context, nodeName: string): Promise<number> {
  const rawDeadline = stringFlag(args, 'deadline');
  const cancel = boolFlag(args, 'cancel');
  const monitor = boolFlag(args, 'monitor');
  const detach = boolFlag(args, 'detach');
  if ([rawDeadline !== undefined || detach, cancel, monitor].filter(Boolean).length > 1)
    throw new UsageError('give one of --deadline/--detach, --cancel or --monitor');
  if (rawDeadline !== undefined) {
    const d = drainDeadline(rawDeadline);
    if ('problem' in d) throw new UsageError(`--deadline: ${d.problem}, got "${rawDeadline}"`);
  }
  const client = ctx.client();
  if (cancel) {
    const node = await client.drainNode(nodeName, { cancel: true });
    ctx.stdout.write(ctx.json ? json(node) : `node ${node.name}: not draining; it is eligible\n`);
    return 0;
  }
  let node: Node;
  if (monitor) {
    node = await client.getNode(nodeName);
    if (!node.drain) {
      ctx.stdout.write(
        ctx.json
          ? json({ node, outcome: 'not-draining' })
          : `node ${node.name} is not draining (${eligibilityOf(node)})\n`,
      );
      return 0;
    }
  } else {
    node = await client.drainNode(nodeName, rawDeadline !== undefined ? { deadline: rawDeadline } : {});
    if (detach) {
      ctx.stdout.write(
        ctx.json
          ? json(node)
          : `node ${node.name}: draining; follow it with "unum node drain ${node.name} --monitor"\n`,
      );
      return 0;
    }
  }
  const progress = new Progress(ctx.stderr, !ctx.json);
  const outcome = await followDrain(ctx, node.id, { progress });
  progress.done();
  const name = node.name;
  switch (outcome.status) {
    case 'drained':
      ctx.stdout.write(
        ctx.json
          ? json({ node: outcome.node, outcome: 'drained' })
          : `node ${name} drained: nothing runs there; it stays ineligible until "unum node eligible ${name}"\n`,
      );
      return 0;
    case 'canceled':
      ctx.stderr.write(`error: the drain of ${name} was canceled meanwhile; the node is eligible again\n`);
      return 1;
    case 'gone':
      ctx.stderr.write(`error: node ${name} is gone\n`);
      return 1;
    case 'interrupted':
      ctx.stderr.write(
        `stopped following; ${name} is still draining on the servers. Follow it: unum node drain ${name} --monitor; stop it: unum node drain ${name} --cancel\n`,
      );
      return 130;
  }
}
