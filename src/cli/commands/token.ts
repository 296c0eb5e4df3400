/** `unum token`: join tokens, which let new machines join the cluster as nodes. */
import type { JoinToken, MadeJoinToken } from '../../api/types.ts';
import { UsageError, positionals, stringFlag, type Command, type Context } from '../context.ts';
import { formatDuration, json, table } from '../output.ts';

const USAGE = `Usage: unum token create [--ttl DURATION] [--description TEXT]
       unum token list
       unum token revoke ID

Join tokens let new machines join the cluster: "unum agent --join URL --token T --ca-hash H"
makes the machine a node with a certificate of its own. Anyone holding a token can join a
machine until it expires or is revoked: keep tokens short-lived, revoke them once used. Nodes
that joined keep their certificates when their token goes.

Needs node:write or operator:write (a management token has both); list needs node:read or
operator:read. Only a server with TLS ("unum server") has join tokens.

  create             make a token; its secret is printed once, with the join command
    --ttl DURATION   valid for this long (default 24h, at most 720h)
    --description T  what it is for (shown by list)
  list               tokens: id, expiry, how many nodes joined with each (never secrets)
  revoke ID          no machine joins with it any more

Examples:
  unum token create --ttl 1h --description "rack 3"
  unum token list
  unum token revoke 3f9a1c2e
`;

export const tokenCommand: Command = {
  name: 'token',
  summary: 'Join tokens: let new machines join as nodes',
  usage: USAGE,
  flags: { ttl: { type: 'string' }, description: { type: 'string' } },
  async run(args, ctx) {
    const [action, ...rest] = args.positionals;
    const client = ctx.client();
    switch (action) {
      case 'create': {
        if (rest.length > 0) throw new UsageError('unum token create takes no arguments (see --ttl)');
        const ttl = stringFlag(args, 'ttl');
        const description = stringFlag(args, 'description');
        const made = await client.createJoinToken({
          ...(ttl !== undefined ? { ttl } : {}),
          ...(description !== undefined ? { description } : {}),
        });
        ctx.stdout.write(ctx.json ? json(made) : madeText(made, client.addr, ctx.now()));
        return 0;
      }
      case 'list': {
        positionals(args, 1, 1, '');
        const { items } = await client.joinTokens();
        ctx.stdout.write(ctx.json ? json(items) : tokenTable(ctx, items));
        return 0;
      }
      case 'revoke': {
        if (rest.length !== 1) throw new UsageError('unum token revoke takes the token ID (unum token list)');
        await client.revokeJoinToken(rest[0] ?? '');
        ctx.stdout.write(ctx.json ? json({ revoked: rest[0] }) : `join token ${rest[0]} revoked\n`);
        return 0;
      }
      default:
        throw new UsageError(
          action === undefined
            ? 'unum token needs a subcommand: create, list or revoke (see unum token --help)'
            : `unknown subcommand "unum token ${action}" (see unum token --help)`,
        );
    }
  },
};

/** The join command an operator runs on the new machine. */
export function joinCommand(addr: string, secret: string, caHash: string): string {
  return `unum agent --join ${addr} --token ${secret} --ca-hash ${caHash}`;
}

function madeText(made: MadeJoinToken, addr: string, now: number): string {
  const left = formatDuration(Math.max(0, made.token.expiresAt - now));
  return (
    `join token ${made.token.id} made, valid for ${left}\n\n` +
    `secret (shown once):\n  ${made.secret}\n\n` +
    `on each new machine:\n  ${joinCommand(addr, made.secret, made.caHash)}\n`
  );
}

function tokenTable(ctx: Context, items: readonly JoinToken[]): string {
  const when = (t: number) => new Date(t).toISOString().slice(0, 19).replace('T', ' ');
  return `${table(
    ['ID', 'EXPIRES', 'JOINS', 'CREATED BY', 'DESCRIPTION'],
    items.map((t) => [
      t.id,
      t.expiresAt <= ctx.now() ? `${when(t.expiresAt)} (expired)` : when(t.expiresAt),
      String(t.joins),
      t.createdBy,
      t.description ?? '',
    ]),
    { header: ctx.color.bold },
  )}\n`;
}
