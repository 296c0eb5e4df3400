/** `unum acl`: bootstrap the first management token; manage policies and tokens. */
import type { AclToken, PolicyRule } from '../../core/acl.ts';
import { UsageError, boolFlag, stringFlag, type Command, type Context } from '../context.ts';
import { readJobFile } from '../job-file.ts';
import { json, table } from '../output.ts';

const USAGE = `Usage: unum acl bootstrap
       unum acl policy apply NAME FILE | list | delete NAME
       unum acl token create --name NAME [--policy P]... [--management] [--ttl DURATION]
       unum acl token list | revoke ACCESSOR | self

Access control: every request needs a token (deny by default), and a token may do what its
policies grant, per namespace and capability. "unum up" makes a management token by itself and
keeps it in its data dir, where the CLI on the same machine finds it; elsewhere set UNUM_TOKEN
(or UNUM_TOKEN_FILE).

  bootstrap            make the cluster's first management token (once); its secret is printed
                       once: keep it
  policy apply NAME FILE
                       create or replace a policy from a YAML or JSON file:
                         description: developers of team a
                         rules:
                           - namespace: team-a        # a name, "*" or a prefix such as "team-*"
                             capabilities: [job:read, job:write, logs:read, event:read]
  policy list | delete NAME
  token create         make a token; its secret is printed once (--json: {token, secret})
    --name NAME        what it is for
    --policy P         a policy it gets (repeatable)
    --management       may do everything, including changing ACLs
    --ttl DURATION     expires after this long (e.g. 24h); default: until revoked
  token list | revoke ACCESSOR | self

Capabilities: job:read job:write logs:read exec kv:read kv:write event:read (per namespace);
node:read node:write operator:read operator:write (cluster-wide: need namespace "*").

Examples:
  unum acl policy apply team-a team-a.yaml
  unum acl token create --name ci --policy team-a --ttl 720h
  UNUM_TOKEN=unum-token-… unum status -n team-a
`;

export const aclCommand: Command = {
  name: 'acl',
  summary: 'Access control: bootstrap, policies and tokens',
  usage: USAGE,
  flags: {
    name: { type: 'string' },
    policy: { type: 'string', multiple: true },
    management: { type: 'boolean' },
    ttl: { type: 'string' },
  },
  async run(args, ctx) {
    const [what, action, ...rest] = args.positionals;
    const client = ctx.client();
    const key = `${what ?? ''} ${action ?? ''}`.trim();
    const expect = (n: number, names: string) => {
      if (rest.length !== n) throw new UsageError(`unum acl ${key} takes ${names || 'no more arguments'}`);
    };
    switch (what === 'bootstrap' ? 'bootstrap' : key) {
      case 'bootstrap': {
        if (action !== undefined) throw new UsageError('unum acl bootstrap takes no arguments');
        const made = await client.aclBootstrap();
        ctx.stdout.write(ctx.json ? json(made) : madeText(made.token, made.secret));
        return 0;
      }
      case 'policy apply': {
        expect(2, 'NAME FILE');
        const [name = '', file = ''] = rest;
        const doc = (await readJobFile(file, undefined, {
          noun: 'policy',
          shape: 'a mapping with "rules"',
        })) as { description?: string; rules?: PolicyRule[] };
        const policy = await client.applyAclPolicy(name, doc as { rules: PolicyRule[] });
        ctx.stdout.write(
          ctx.json ? json(policy) : `policy ${policy.name} applied (${policy.rules.length} rules)\n`,
        );
        return 0;
      }
      case 'policy list': {
        expect(0, '');
        const { items } = await client.aclPolicies();
        if (ctx.json) ctx.stdout.write(json(items));
        else
          ctx.stdout.write(
            `${table(
              ['NAME', 'RULES', 'DESCRIPTION'],
              items.map((p) => [
                p.name,
                p.rules.map((r) => `${r.namespace}: ${r.capabilities.join(',')}`).join('; '),
                p.description ?? '',
              ]),
              { header: ctx.color.bold },
            )}\n`,
          );
        return 0;
      }
      case 'policy delete': {
        expect(1, 'NAME');
        await client.deleteAclPolicy(rest[0] ?? '');
        ctx.stdout.write(ctx.json ? json({ deleted: rest[0] }) : `policy ${rest[0]} deleted\n`);
        return 0;
      }
      case 'token create': {
        expect(0, '');
        const name = stringFlag(args, 'name');
        if (!name) throw new UsageError('unum acl token create needs --name NAME (what the token is for)');
        const policies = args.flags['policy'];
        const ttl = stringFlag(args, 'ttl');
        const made = await client.createAclToken({
          name,
          policies: Array.isArray(policies) ? policies.filter((p): p is string => typeof p === 'string') : [],
          management: boolFlag(args, 'management'),
          ...(ttl !== undefined ? { ttl } : {}),
        });
        ctx.stdout.write(ctx.json ? json(made) : madeText(made.token, made.secret));
        return 0;
      }
      case 'token list': {
        expect(0, '');
        const { items } = await client.aclTokens();
        ctx.stdout.write(ctx.json ? json(items) : tokenTable(ctx, items));
        return 0;
      }
      case 'token revoke': {
        expect(1, 'ACCESSOR');
        await client.revokeAclToken(rest[0] ?? '');
        ctx.stdout.write(ctx.json ? json({ revoked: rest[0] }) : `token ${rest[0]} revoked\n`);
        return 0;
      }
      case 'token self': {
        expect(0, '');
        const t = await client.aclSelf();
        ctx.stdout.write(ctx.json ? json(t) : tokenTable(ctx, [t]));
        return 0;
      }
      default:
        throw new UsageError(
          what === undefined
            ? 'unum acl needs a subcommand: bootstrap, policy or token (see unum acl --help)'
            : `unknown subcommand "unum acl ${key}" (see unum acl --help)`,
        );
    }
  },
};

function madeText(token: AclToken, secret: string): string {
  return `token "${token.name}" made (accessor ${token.accessor})${token.management ? ', management' : ''}\n\nsecret (shown once, keep it):\n  ${secret}\n\nuse it: export UNUM_TOKEN=${secret}\n`;
}

function tokenTable(ctx: Context, items: readonly AclToken[]): string {
  return `${table(
    ['ACCESSOR', 'NAME', 'POLICIES', 'CREATED', 'EXPIRES'],
    items.map((t) => [
      t.accessor,
      t.name,
      t.management ? '(management)' : t.policies.join(',') || '-',
      new Date(t.createdAt).toISOString().slice(0, 19).replace('T', ' '),
      t.expiresAt !== undefined
        ? new Date(t.expiresAt).toISOString().slice(0, 19).replace('T', ' ')
        : 'never',
    ]),
    { header: ctx.color.bold },
  )}\n`;
}
