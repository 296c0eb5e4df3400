/** `unum version`: this CLI's version, and the server's when one answers. */
import type { ServerStatus } from '../../api/types.ts';
import { unumVersion } from '../../core/version.ts';
import { positionals, type Command } from '../context.ts';
import { json } from '../output.ts';

export const versionCommand: Command = {
  name: 'version',
  summary: 'Show the version of unum (and of the server, if it answers)',
  usage: `Usage: unum version

Prints the version of this unum, and the version, store backend and address
of the server at --addr when it answers.

Flags:
  --json   { version, server? }

Examples:
  unum version
  unum version --addr http://10.0.0.1:8686 --json
`,
  async run(args, ctx) {
    positionals(args, 0, 0, '');
    const version = unumVersion();
    let server: ServerStatus | undefined;
    let why = '';
    try {
      server = await ctx.client().status();
    } catch (err) {
      why = (err as Error).message;
    }
    if (ctx.json) {
      ctx.stdout.write(json(server ? { version, server } : { version }));
      return 0;
    }
    ctx.stdout.write(`unum ${version} (node ${process.version})\n`);
    if (server)
      ctx.stdout.write(
        `server ${server.version} at ${server.addr || ctx.client().addr} (${server.backend} store)\n`,
      );
    else ctx.stdout.write(`server: ${why}\n`);
    return 0;
  },
};
