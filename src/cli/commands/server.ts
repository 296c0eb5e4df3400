/** `unum server`: the control plane alone (API, scheduler, controllers); agents join it. */
import { DEFAULT_ADDR } from '../../api/client.ts';
import type { MadeJoinToken } from '../../api/types.ts';
import { joinCommand } from './token.ts';
import { keyValues } from '../output.ts';
import { positionals, stringFlag, type Command } from '../context.ts';
import {
  DAEMON_FLAGS,
  SERVER_FLAGS,
  SERVER_FLAGS_HELP,
  serverOptions,
  daemonLogger,
  dataDirFrom,
  ensureDataDir,
  listenAddr,
  logLevel,
  startError,
  untilInterrupted,
} from '../daemon.ts';
import { json } from '../output.ts';

export const serverCommand: Command = {
  name: 'server',
  summary: 'Run the control plane (API, scheduler, controllers)',
  usage: `Usage: unum server [--addr HOST:PORT] [--data-dir DIR] [--store URL] [--tls-name NAME]
                   [--allow-host NAME] [--log-level LEVEL]

Runs a unum server: the API, the scheduler and the controllers, over a store, serving
HTTPS. At its first start it makes the cluster's CA (DATA_DIR/server/ca-key.pem, mode
0600; its certificate DATA_DIR/ca.pem is for clients: UNUM_CACERT), a certificate for
its addresses, and a first join token, and prints the command that joins a machine:
  unum agent --join https://ADDR --token T --ca-hash sha256:…
More join tokens: "unum token create". Runs until Ctrl-C or SIGTERM.

Flags:
  --addr HOST:PORT     where the API listens (default: $UNUM_ADDR, else 127.0.0.1:8686)
  --data-dir DIR       state directory (default: $UNUM_DATA_DIR, else
                       \${XDG_DATA_HOME:-~/.local/share}/unum)
  --store URL          sqlite:PATH (default: sqlite:DATA_DIR/server/state.db), memory:, or
                       etcd://HOST:2379,HOST:2379 (etcds://…?ca=F&cert=F&key=F for TLS): every
                       server of a cluster on the same etcd, one of them leading at a time
  --tls-name NAME      another DNS name or address the server certificate names (repeatable;
                       it names the listen address, or every address of the machine for
                       0.0.0.0, and localhost and the host name)
${SERVER_FLAGS_HELP}
  --log-level LEVEL    fatal, error, warn, info, debug, trace or silent
                       (default: $UNUM_LOG_LEVEL, else info); logs are JSON on stderr
  --json               print the address, CA file and hash (and a first join token) as JSON

Examples:
  unum server
  unum server --addr 0.0.0.0:8686 --data-dir /var/lib/unum
`,
  flags: {
    ...DAEMON_FLAGS,
    ...SERVER_FLAGS,
    store: { type: 'string' },
    'tls-name': { type: 'string', multiple: true },
  },
  async run(args, ctx) {
    positionals(args, 0, 0, '');
    const addr = listenAddr(ctx.addr ?? ctx.env['UNUM_ADDR'] ?? DEFAULT_ADDR);
    const dataDir = dataDirFrom(stringFlag(args, 'data-dir'), ctx.env);
    const store = stringFlag(args, 'store');
    const tlsNames = args.flags['tls-name'];
    const logger = daemonLogger('unum-server', logLevel(args, ctx.env, 'info'));
    const signal = ctx.interrupted();
    await ensureDataDir(dataDir);

    const { startServer } = await import('../../server/index.ts');
    let server;
    try {
      server = await startServer({
        dataDir,
        addr,
        logger,
        ...(store ? { store } : {}),
        ...serverOptions(args),
        tls: {
          names: Array.isArray(tlsNames) ? tlsNames.filter((n): n is string => typeof n === 'string') : [],
        },
      });
    } catch (err) {
      throw startError('server', addr, err);
    }
    const pki = server.pki;
    // A new cluster: a first join token, so that the banner's command joins a machine as it is.
    let first: MadeJoinToken | undefined;
    if (pki?.created) first = await server.createJoinToken({ description: 'first join token (unum server)' });
    const url = joinAddr(server.addr, pki?.names ?? []);
    if (ctx.json)
      ctx.stdout.write(
        json({
          addr: server.addr,
          dataDir,
          ...(pki ? { caFile: pki.caFile, caHash: pki.caHash } : {}),
          ...(first ? { joinToken: first.secret, join: joinCommand(url, first.secret, first.caHash) } : {}),
        }),
      );
    else {
      const c = ctx.color;
      const pairs: [string, string][] = [
        ['API', c.bold(server.addr)],
        ['data dir', dataDir],
      ];
      if (pki) pairs.push(['CA certificate', `${pki.caFile} (${pki.caHash})`]);
      let text = `unum server listening on ${server.addr}\n\n${keyValues(pairs)}`;
      if (pki) {
        text += `\nClients: export UNUM_ADDR=${url} UNUM_CACERT=${pki.caFile}\n`;
        text += first
          ? `\nJoin a machine (this token is valid 24h; more: unum token create):\n  ${joinCommand(url, first.secret, first.caHash)}\n`
          : `\nJoin a machine: unum token create (prints the command: unum agent --join ${url} --token … --ca-hash ${pki.caHash})\n`;
      }
      ctx.stdout.write(text);
    }

    if (!signal.aborted) await untilInterrupted(ctx);
    if (!ctx.json) ctx.stderr.write('stopping the server...\n');
    await server.stop();
    return 0;
  },
};

/** The address a machine joins: the listen address, or for a wildcard one the server certificate names. */
function joinAddr(addr: string, names: readonly string[]): string {
  const u = new URL(addr);
  if (u.hostname !== '[::]' && u.hostname !== '0.0.0.0') return addr;
  const ip = names.find((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n) && !n.startsWith('127.'));
  return ip !== undefined ? `${u.protocol}//${ip}:${u.port}` : addr;
}
