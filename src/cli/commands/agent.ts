/** `unum agent`: runs this machine's share of the cluster's work. */
import { cliToken } from '../token.ts';
import { DEFAULT_ADDR, resolveAddr } from '../../api/client.ts';
import { positionals, stringFlag, UsageError, type Command } from '../context.ts';
import {
  DAEMON_FLAGS,
  TASK_FLAGS,
  TASK_FLAGS_HELP,
  taskAgentOptions,
  daemonLogger,
  dataDirFrom,
  ensureDataDir,
  listenAddr,
  logLevel,
  startError,
  untilInterrupted,
} from '../daemon.ts';
import { json } from '../output.ts';
import { shortId } from '../../core/ids.ts';

export const agentCommand: Command = {
  name: 'agent',
  summary: "Run an agent: offer this machine's resources and run its tasks",
  usage: `Usage: unum agent [--servers URL[,URL...]] [--data-dir DIR] [--http-addr HOST:PORT]
                  [--name NAME] [task flags] [--log-level LEVEL]

Registers this machine as a node with the servers, keeps it alive, and runs the
allocations placed on it. Its first registration needs a token that may node:write
($UNUM_TOKEN or $UNUM_TOKEN_FILE); the node then gets a credential of its own, kept in
DATA_DIR/agent/credential.json, and uses it from then on. Tasks keep running while the servers are unreachable,
and a restarted agent picks up its running tasks again. Runs until Ctrl-C or SIGTERM,
which stop the agent but leave its tasks running for the next agent to take over.

Flags:
  --servers URLS        the servers, comma-separated (default: --addr, $UNUM_ADDR,
                        else ${DEFAULT_ADDR})
  --data-dir DIR        state directory (default: $UNUM_DATA_DIR, else
                        \${XDG_DATA_HOME:-~/.local/share}/unum)
  --http-addr HOST:PORT where the agent serves logs to clients (default: a free port on 127.0.0.1)
  --name NAME           node name (default: the host name)
${TASK_FLAGS_HELP}
  --log-level LEVEL     fatal, error, warn, info, debug, trace or silent
                        (default: $UNUM_LOG_LEVEL, else info); logs are JSON on stderr
  --json                print the node id and address as JSON once started

Examples:
  UNUM_TOKEN=unum-token-… unum agent --servers http://10.0.0.1:8686
  unum agent --servers http://10.0.0.1:8686,http://10.0.0.2:8686 --name rack1-a --http-addr 0.0.0.0:8687
`,
  flags: {
    ...DAEMON_FLAGS,
    servers: { type: 'string' },
    'http-addr': { type: 'string' },
    name: { type: 'string' },
    ...TASK_FLAGS,
  },
  async run(args, ctx) {
    positionals(args, 0, 0, '');
    const servers = (stringFlag(args, 'servers') ?? ctx.addr ?? ctx.env['UNUM_ADDR'] ?? DEFAULT_ADDR)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map((s) => resolveAddr(s));
    if (servers.length === 0) throw new UsageError('--servers needs at least one server URL');
    const httpAddrFlag = stringFlag(args, 'http-addr');
    const httpAddr = httpAddrFlag === undefined ? '127.0.0.1:0' : listenAddr(httpAddrFlag, '--http-addr');
    const name = stringFlag(args, 'name');
    const dataDir = dataDirFrom(stringFlag(args, 'data-dir'), ctx.env);
    const logger = daemonLogger('unum-agent', logLevel(args, ctx.env, 'info'));
    const signal = ctx.interrupted();
    await ensureDataDir(dataDir);

    const { startAgent } = await import('../../agent/index.ts');
    let agent;
    try {
      const joinToken = cliToken({ ...ctx.env, UNUM_DATA_DIR: dataDir });
      agent = await startAgent({
        dataDir,
        servers,
        httpAddr,
        logger,
        ...taskAgentOptions(args),
        ...(name ? { name } : {}),
        ...(joinToken !== undefined ? { token: joinToken } : {}),
      });
    } catch (err) {
      throw startError('agent', httpAddr, err);
    }
    if (ctx.json)
      ctx.stdout.write(
        json({ nodeId: agent.nodeId, address: agent.address, servers, dataDir, warnings: agent.warnings }),
      );
    else {
      ctx.stdout.write(
        `unum agent: node ${shortId(agent.nodeId)} serving at ${agent.address}, joined ${servers.join(', ')}\n`,
      );
      for (const w of agent.warnings) ctx.stderr.write(`warning: ${w}\n`);
    }

    if (!signal.aborted) await untilInterrupted(ctx);
    if (!ctx.json) ctx.stderr.write('stopping the agent...\n');
    await agent.stop();
    return 0;
  },
};
