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
import type { Args } from '../context.ts';

/** `--join URL --token T --ca-hash H`: all three, or none. */
function joinFlags(args: Args): { server: string; token: string; caHash: string } | undefined {
  const server = stringFlag(args, 'join');
  const token = stringFlag(args, 'token');
  const caHash = stringFlag(args, 'ca-hash');
  if (server === undefined && token === undefined && caHash === undefined) return undefined;
  if (server === undefined || token === undefined || caHash === undefined)
    throw new UsageError(
      'joining takes --join URL, --token T and --ca-hash sha256:HEX together (unum token create prints them)',
    );
  const servers = server
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const s of servers)
    if (!/^https:\/\//.test(s))
      throw new UsageError(`--join expects the servers' https:// addresses, comma-separated, got "${s}"`);
  if (servers.length === 0) throw new UsageError('--join expects at least one https:// server address');
  return { server: servers.map((s) => resolveAddr(s)).join(','), token, caHash };
}

export const agentCommand: Command = {
  name: 'agent',
  summary: "Run an agent: offer this machine's resources and run its tasks",
  usage: `Usage: unum agent --join URL --token T --ca-hash sha256:HEX [--servers URL[,URL...]]
                  [--data-dir DIR] [--http-addr HOST:PORT] [--name NAME] [task flags]
       unum agent [--servers URL[,URL...]] ...

Registers this machine as a node with the servers, keeps it alive, and runs the
allocations placed on it. Tasks keep running while the servers are unreachable, and a
restarted agent picks up its running tasks again. Runs until Ctrl-C or SIGTERM, which
stop the agent but leave its tasks running for the next agent to take over.

Joining a server ("unum server" prints the command, "unum token create" too): the agent
checks that the server holds the CA of that hash (it refuses otherwise), sends the join
token and a request for its node id, and keeps the node certificate it gets in
DATA_DIR/agent/tls/ (its key 0600, never sent). From then on it calls the servers over
TLS with that certificate, and its own API (logs, stats) answers only the servers. The
same command restarts it: a node that joined keeps its id and certificate, and joins
again only for another CA or an expired certificate.

A plain http:// server (unum up's) takes instead a token that may node:write at the first
registration ($UNUM_TOKEN or $UNUM_TOKEN_FILE); the node then gets a credential of its
own, kept in DATA_DIR/agent/credential.json.

Flags:
  --join URLS           the https:// server to join (with --token and --ca-hash); several,
                        comma-separated: the first that answers (and, without --servers, all of them)
  --token T             a join token (unum token create)
  --ca-hash sha256:HEX  the hash of the cluster CA (the server's banner, unum token create)
  --servers URLS        the servers, comma-separated (default: --join, --addr, $UNUM_ADDR,
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
  unum agent --join https://10.0.0.1:4646 --token unum-join-… --ca-hash sha256:… --http-addr 10.0.0.2:8687
  UNUM_TOKEN=unum-token-… unum agent --servers http://127.0.0.1:8686
  unum agent --servers http://10.0.0.1:8686,http://10.0.0.2:8686 --name rack1-a --http-addr 0.0.0.0:8687
`,
  flags: {
    ...DAEMON_FLAGS,
    servers: { type: 'string' },
    'http-addr': { type: 'string' },
    name: { type: 'string' },
    join: { type: 'string' },
    token: { type: 'string' },
    'ca-hash': { type: 'string' },
    ...TASK_FLAGS,
  },
  async run(args, ctx) {
    positionals(args, 0, 0, '');
    const join = joinFlags(args);
    const servers = (
      stringFlag(args, 'servers') ??
      join?.server ??
      ctx.addr ??
      ctx.env['UNUM_ADDR'] ??
      DEFAULT_ADDR
    )
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
      const joinToken = join === undefined ? cliToken({ ...ctx.env, UNUM_DATA_DIR: dataDir }) : undefined;
      agent = await startAgent({
        ...(join !== undefined ? { join } : {}),
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
