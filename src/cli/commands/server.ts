/** `unum server`: the control plane alone (API, scheduler, controllers); agents join it. */
import { DEFAULT_ADDR } from '../../api/client.ts';
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
  usage: `Usage: unum server [--addr HOST:PORT] [--data-dir DIR] [--store URL] [--allow-host NAME] [--log-level LEVEL]

Runs a unum server: the API, the scheduler and the controllers, over a store.
Agents join it with "unum agent --servers URL". Runs until Ctrl-C or SIGTERM.

Flags:
  --addr HOST:PORT     where the API listens (default: $UNUM_ADDR, else 127.0.0.1:8686)
  --data-dir DIR       state directory (default: $UNUM_DATA_DIR, else
                       \${XDG_DATA_HOME:-~/.local/share}/unum)
  --store URL          sqlite:PATH (default: sqlite:DATA_DIR/server/state.db) or memory:
${SERVER_FLAGS_HELP}
  --log-level LEVEL    fatal, error, warn, info, debug, trace or silent
                       (default: $UNUM_LOG_LEVEL, else info); logs are JSON on stderr
  --json               print the address as JSON once started

Examples:
  unum server
  unum server --addr 0.0.0.0:8686 --data-dir /var/lib/unum
`,
  flags: { ...DAEMON_FLAGS, ...SERVER_FLAGS, store: { type: 'string' } },
  async run(args, ctx) {
    positionals(args, 0, 0, '');
    const addr = listenAddr(ctx.addr ?? ctx.env['UNUM_ADDR'] ?? DEFAULT_ADDR);
    const dataDir = dataDirFrom(stringFlag(args, 'data-dir'), ctx.env);
    const store = stringFlag(args, 'store');
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
      });
    } catch (err) {
      throw startError('server', addr, err);
    }
    if (ctx.json) ctx.stdout.write(json({ addr: server.addr, dataDir }));
    else ctx.stdout.write(`unum server listening on ${server.addr} (data in ${dataDir})\n`);

    if (!signal.aborted) await untilInterrupted(ctx);
    if (!ctx.json) ctx.stderr.write('stopping the server...\n');
    await server.stop();
    return 0;
  },
};
