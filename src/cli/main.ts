/**
 * `unum` command line: global flags, verb dispatch, and the one place errors become output and exit
 * codes (0 ok, 1 failed, 2 wrong usage, 130 interrupted). Each verb lives in commands/<verb>.ts.
 */
import { cliToken } from './token.ts';
import { cliCa } from './ca.ts';
import { parseArgs } from 'node:util';
import { DEFAULT_ADDR, UnumClient } from '../api/client.ts';
import { isValidName } from '../core/ids.ts';
import { closest } from '../core/job-spec.ts';
import { agentCommand } from './commands/agent.ts';
import { eventsCommand } from './commands/events.ts';
import { helpCommand } from './commands/help.ts';
import { logsCommand } from './commands/logs.ts';
import { nodeCommand } from './commands/node.ts';
import { nodesCommand } from './commands/nodes.ts';
import { planCommand } from './commands/plan.ts';
import { psCommand } from './commands/ps.ts';
import { runCommand } from './commands/run.ts';
import { serverCommand } from './commands/server.ts';
import { statusCommand } from './commands/status.ts';
import { stopCommand } from './commands/stop.ts';
import { aclCommand } from './commands/acl.ts';
import { tokenCommand } from './commands/token.ts';
import { operatorCommand } from './commands/operator.ts';
import { upCommand } from './commands/up.ts';
import { versionCommand } from './commands/version.ts';
import { UsageError, type Args, type Command, type Context, type FlagSpecs } from './context.ts';
import { report } from './report.ts';
import { colorEnabled, colors, type Out } from './output.ts';

/** Flags every verb takes, before or after the verb. */
export const GLOBAL_FLAGS: FlagSpecs = {
  addr: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** Every verb, in the order `unum help` lists them. */
export const COMMANDS: Record<string, Command> = {
  up: upCommand,
  server: serverCommand,
  agent: agentCommand,
  run: runCommand,
  plan: planCommand,
  status: statusCommand,
  ps: psCommand,
  logs: logsCommand,
  stop: stopCommand,
  acl: aclCommand,
  token: tokenCommand,
  operator: operatorCommand,
  nodes: nodesCommand,
  node: nodeCommand,
  events: eventsCommand,
  version: versionCommand,
  help: helpCommand(
    () => COMMANDS,
    () => mainUsage(),
  ),
};

export function mainUsage(): string {
  const line = (c: Command) => `  ${c.name.padEnd(9)}${c.summary}`;
  const section = (title: string, names: string[]) =>
    [`${title}:`, ...names.flatMap((n) => (COMMANDS[n] ? [line(COMMANDS[n])] : []))].join('\n');
  return `unum: a datacenter operating system. Install it on N machines and they act as one computer.

Usage: unum [global flags] COMMAND [flags] [args]

${section('Run unum', ['up', 'server', 'agent'])}

${section('Jobs', ['run', 'plan', 'status', 'ps', 'logs', 'stop'])}

${section('Cluster', ['nodes', 'node', 'events', 'acl', 'token', 'operator'])}

${section('Other', ['version', 'help'])}

Global flags (before or after the command):
  --addr URL             server address (default: $UNUM_ADDR, else ${DEFAULT_ADDR})
  -n, --namespace NAME   namespace of jobs (default: default)
      --json             machine output: the API objects as one JSON document on stdout
  -h, --help             show help

Credentials: $UNUM_TOKEN, else the file $UNUM_TOKEN_FILE, else the management token
"unum up" keeps in its data dir ($UNUM_DATA_DIR, else ~/.local/share/unum).
An https:// server is trusted by the CA file $UNUM_CACERT names (else DATA_DIR/ca.pem, which
"unum server" and joined agents keep).

Quick start:
  unum up                        # a one-machine cluster, in another terminal
  unum run examples/web.yaml     # start a service and follow its rollout
  unum status web                # where it runs, and why not
  unum logs web -f               # follow the output of every instance

"unum help COMMAND" or "unum COMMAND --help" shows a command's flags and examples.
Set UNUM_DEBUG=1 to see stack traces of errors.
`;
}

export interface MainOptions {
  stdout?: Out;
  stderr?: Out;
  env?: Record<string, string | undefined>;
  /** When given, Ctrl-C handling is the caller's: verbs that wait stop when this aborts. */
  signal?: AbortSignal;
  now?: () => number;
}

function processOut(stream: NodeJS.WriteStream): Out {
  return {
    write: (text) => void stream.write(text),
    get isTTY() {
      return stream.isTTY === true;
    },
  };
}

/** Runs the command line `argv` (without `node unum`) and returns the exit code. */
export async function main(argv: string[], options: MainOptions = {}): Promise<number> {
  const stdout = options.stdout ?? processOut(process.stdout);
  const stderr = options.stderr ?? processOut(process.stderr);
  const env = options.env ?? process.env;
  if (!options.stdout) quietOnClosedPipe();
  let verb: Command | undefined;
  const cleanups: (() => void)[] = [];
  let controller: AbortController | undefined;
  const makeContext = (flags: {
    addr?: string | undefined;
    namespace?: string | undefined;
    json: boolean;
  }) => {
    let client: UnumClient | undefined;
    const ctx: Context = {
      stdout,
      stderr,
      env,
      addr: flags.addr,
      namespace: flags.namespace ?? 'default',
      namespaceExplicit: flags.namespace !== undefined,
      json: flags.json,
      color: colors(colorEnabled(stdout, env)),
      colorErr: colors(colorEnabled(stderr, env)),
      client: () => {
        const token = cliToken(env);
        const addr = flags.addr ?? env['UNUM_ADDR'] ?? DEFAULT_ADDR;
        const ca = /^https:/i.test(addr) ? cliCa(env) : undefined;
        client ??= new UnumClient({
          addr,
          ...(token ? { token } : {}),
          ...(ca !== undefined ? { ca } : {}),
        });
        return client;
      },
      interrupted: () => {
        if (options.signal) return options.signal;
        if (!controller) {
          const c = new AbortController();
          controller = c;
          // First Ctrl-C: let the verb finish cleanly; a second one: the user means it.
          const onSignal = () => {
            if (c.signal.aborted) process.exit(130);
            c.abort(new Error('interrupted'));
          };
          process.on('SIGINT', onSignal);
          process.on('SIGTERM', onSignal);
          cleanups.push(() => {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
          });
        }
        return controller.signal;
      },
      now: options.now ?? Date.now,
    };
    return ctx;
  };
  try {
    const { pre, name, rest } = splitVerb(argv);
    const global = parseFlags(pre, GLOBAL_FLAGS, undefined);
    if (name === undefined || name === 'help') {
      // `unum`, `unum --help`, `unum help [COMMAND]`
      const target = name === 'help' ? rest.find((a) => !a.startsWith('-')) : undefined;
      const help = COMMANDS['help'];
      if (!help) return 1;
      if (name === 'help' && !target && rest.some((a) => a === '-h' || a === '--help')) {
        stdout.write(help.usage);
        return 0;
      }
      return await help.run(
        { flags: {}, positionals: target ? [target] : [], rest: undefined },
        makeContext({ json: false }),
      );
    }
    verb = COMMANDS[name];
    if (!verb) {
      const hint = closest(name, Object.keys(COMMANDS));
      throw new UsageError(`unknown command "${name}"${hint ? `; did you mean "${hint}"?` : ''}`);
    }
    const dashdash = rest.indexOf('--');
    const flagPart = dashdash >= 0 ? rest.slice(0, dashdash) : rest;
    if (global.flags['help'] === true || flagPart.some((a) => a === '-h' || a === '--help')) {
      stdout.write(verb.usage.endsWith('\n') ? verb.usage : `${verb.usage}\n`);
      return 0;
    }
    const args = parseFlags(verb.rest ? flagPart : rest, { ...GLOBAL_FLAGS, ...verb.flags }, verb.name);
    if (verb.rest && dashdash >= 0) args.rest = rest.slice(dashdash + 1);
    const flag = (n: string) => {
      const v = args.flags[n] ?? global.flags[n];
      return typeof v === 'string' ? v : undefined;
    };
    const namespace = flag('namespace');
    if (namespace !== undefined && !isValidName(namespace))
      throw new UsageError(
        `--namespace "${namespace}" is not a valid name (lower-case letters, digits, '-', '_' or '.')`,
      );
    const json = args.flags['json'] === true || global.flags['json'] === true;
    return await verb.run(args, makeContext({ addr: flag('addr'), namespace, json }));
  } catch (err) {
    return report(err, stderr, env, verb?.name);
  } finally {
    for (const c of cleanups) c();
  }
}

const GLOBAL_WITH_VALUE = new Set(['--addr', '-n', '--namespace']);

/** Global flags before the verb, the verb, and everything after it. */
export function splitVerb(argv: readonly string[]): {
  pre: string[];
  name: string | undefined;
  rest: string[];
} {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') return { pre: argv.slice(0, i), name: undefined, rest: argv.slice(i) };
    if (!a.startsWith('-') || a === '-') return { pre: argv.slice(0, i), name: a, rest: argv.slice(i + 1) };
    if (GLOBAL_WITH_VALUE.has(a)) i++;
  }
  return { pre: [...argv], name: undefined, rest: [] };
}

/** `node:util` parseArgs in strict mode, its errors reworded as one line for people. */
export function parseFlags(args: string[], specs: FlagSpecs, verb: string | undefined): Args {
  try {
    const { values, positionals } = parseArgs({ args, options: specs, strict: true, allowPositionals: true });
    return { flags: values as Args['flags'], positionals, rest: undefined };
  } catch (err) {
    const code = (err as { code?: string }).code;
    const message = (err as Error).message;
    const where = verb ? `"unum ${verb}"` : '"unum"';
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const flag = /'([^']+)'/.exec(message)?.[1] ?? message;
      const known = Object.keys(specs);
      const hint = flag.startsWith('--') ? closest(flag.slice(2), known) : undefined;
      throw new UsageError(`unknown flag ${flag} for ${where}${hint ? `; did you mean --${hint}?` : ''}`);
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const flag = /'(-[^' ]+)/.exec(message)?.[1];
      if (flag && /argument missing/.test(message)) throw new UsageError(`flag ${flag} needs a value`);
      if (flag && /does not take an argument/.test(message))
        throw new UsageError(`flag ${flag} takes no value`);
    }
    throw new UsageError(message.split('\n')[0] ?? message);
  }
}

let pipeGuard = false;
/** `unum ps | head` closes our stdout early: that is not an error worth a stack trace. */
function quietOnClosedPipe(): void {
  if (pipeGuard) return;
  pipeGuard = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}
