/** `unum up`: a whole cluster in one process (server + agent on the embedded store). */
import { join } from 'node:path';
import { MANAGEMENT_TOKEN_FILE } from '../token.ts';
import { DEFAULT_ADDR } from '../../api/client.ts';
import { shortId } from '../../core/ids.ts';
import { positionals, stringFlag, type Command } from '../context.ts';
import {
  DAEMON_FLAGS,
  SERVER_FLAGS,
  SERVER_FLAGS_HELP,
  serverOptions,
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
import { json, keyValues } from '../output.ts';

export const upCommand: Command = {
  name: 'up',
  summary: 'Start a one-machine cluster: server and agent in one process',
  usage: `Usage: unum up [--addr HOST:PORT] [--data-dir DIR] [--allow-host NAME] [task flags] [--log-level LEVEL]

Starts the control plane and an agent for this machine in one process, on the
embedded store: the zero-config way to run unum. It serves plain HTTP, meant for
loopback; for several machines run "unum server" (TLS, join tokens) and "unum agent --join". Runs until Ctrl-C or SIGTERM,
then stops the tasks, the agent and the server cleanly (nothing is left running;
the next "unum up" starts the jobs again). If unum crashes instead, the tasks
keep running and the next "unum up" takes them over.

Flags:
  --addr HOST:PORT     where the API and UI listen (default: $UNUM_ADDR, else 127.0.0.1:8686)
  --data-dir DIR       state directory (default: $UNUM_DATA_DIR, else
                       \${XDG_DATA_HOME:-~/.local/share}/unum)
${SERVER_FLAGS_HELP}
${TASK_FLAGS_HELP}
  --log-level LEVEL    fatal, error, warn, info, debug, trace or silent
                       (default: $UNUM_LOG_LEVEL, else warn); logs are JSON on stderr
  --json               print the addresses as JSON once started

Examples:
  unum up
  unum up --addr 127.0.0.1:9000 --data-dir /tmp/unum
  UNUM_ADDR=http://127.0.0.1:9000 unum status     # clients then use the same address
`,
  flags: { ...DAEMON_FLAGS, ...SERVER_FLAGS, ...TASK_FLAGS },
  async run(args, ctx) {
    positionals(args, 0, 0, '');
    const addr = listenAddr(ctx.addr ?? ctx.env['UNUM_ADDR'] ?? DEFAULT_ADDR);
    const dataDir = dataDirFrom(stringFlag(args, 'data-dir'), ctx.env);
    // Quiet by default: the person at the terminal wants the banner, not JSON logs.
    const logger = daemonLogger('unum', logLevel(args, ctx.env, 'warn'));
    const signal = ctx.interrupted();
    await ensureDataDir(dataDir);

    const { startServer } = await import('../../server/index.ts');
    const { startAgent } = await import('../../agent/index.ts');
    let server;
    try {
      server = await startServer({
        dataDir,
        addr,
        logger: logger.child({ role: 'server' }),
        ...serverOptions(args),
      });
    } catch (err) {
      throw startError('server', addr, err);
    }
    // Zero-config and still deny by default: a management token only this user can read, found by
    // the CLI on this machine by itself; the agent in this process joins with it.
    const tokenFile = join(dataDir, MANAGEMENT_TOKEN_FILE);
    const token = await server.ensureManagementToken(tokenFile, 'unum up (local)');
    let agent;
    try {
      agent = await startAgent({
        dataDir,
        servers: [server.addr],
        token,
        httpAddr: '127.0.0.1:0',
        logger: logger.child({ role: 'agent' }),
        ...taskAgentOptions(args),
      });
    } catch (err) {
      await server.stop();
      throw startError('agent', '127.0.0.1:0', err);
    }

    if (ctx.json)
      ctx.stdout.write(
        json({
          addr: server.addr,
          dataDir,
          nodeId: agent.nodeId,
          agentAddress: agent.address,
          tokenFile,
          warnings: agent.warnings,
        }),
      );
    else {
      const c = ctx.color;
      const pairs: [string, string][] = [
        ['API and UI', `${c.bold(server.addr)} (plain HTTP for this machine; many machines: unum server)`],
        ['data dir', dataDir],
        ['token', `${tokenFile} (the CLI on this machine uses it; others: UNUM_TOKEN)`],
        ['node', `${shortId(agent.nodeId)} (agent at ${agent.address})`],
      ];
      let text = `${c.green('unum is up.')}\n\n${indent(keyValues(pairs))}\n`;
      if (server.addr !== DEFAULT_ADDR) text += `Clients: export UNUM_ADDR=${server.addr}\n`;
      if (!isLoopback(new URL(server.addr).hostname))
        text += `\n${c.yellow('Plain HTTP on a non-loopback address:')} tokens cross the network unencrypted. For several machines run "unum server" (TLS) and join agents to it.\n`;
      if (agent.warnings.length > 0)
        text += `\n${c.yellow('Not enforced on this machine:')}\n${agent.warnings.map((w) => `  - ${w}\n`).join('')}\n`;
      text += `try: unum run examples/web.yaml\nCtrl-C stops unum.\n`;
      ctx.stdout.write(text);
    }

    if (!signal.aborted) await untilInterrupted(ctx);
    if (!ctx.json) ctx.stderr.write('stopping: tasks and agent, then server...\n');
    // A laptop is left clean: `unum up` owns its tasks (a crash still leaves them to be taken over).
    await agent.stop({ killTasks: true });
    await server.stop();
    if (!ctx.json) ctx.stderr.write('stopped.\n');
    return 0;
  },
};

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || host.startsWith('127.');
}
