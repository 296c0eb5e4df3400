/**
 * Running the network tools (`ip` from iproute2, `nft` from nftables) with a script on stdin: one
 * process for a batch of changes. A failure is an UnavailableError carrying the tool's own words.
 */
import { spawn } from 'node:child_process';
import { UnavailableError } from '../../core/errors.ts';

export interface NetTools {
  ip: string;
  nft: string;
}

const TIMEOUT_MS = 15_000;

/** Runs `program args…` with `input` on stdin; resolves with stdout, rejects with its stderr. */
export function runTool(program: string, args: readonly string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: TIMEOUT_MS });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.on('error', (e) =>
      reject(new UnavailableError(`could not run ${program}: ${e.message}`, { cause: e })),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve(out);
      else {
        const why =
          err.trim().split('\n').slice(0, 6).join('; ') || (signal ? `killed by ${signal}` : `exit ${code}`);
        reject(new UnavailableError(`${program.split('/').pop()} ${args.join(' ')} failed: ${why}`));
      }
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** `ip [-n NETNS] [-force] -batch -` with one command per line. */
export function ipBatch(
  tools: NetTools,
  lines: readonly string[],
  opts: { netns?: string; force?: boolean } = {},
): Promise<string> {
  const args = [
    ...(opts.netns !== undefined ? ['-n', opts.netns] : []),
    ...(opts.force ? ['-force'] : []),
    '-batch',
    '-',
  ];
  return runTool(tools.ip, args, lines.join('\n') + '\n');
}

/** `nft -f -`: the script is applied as one transaction. */
export function nftApply(tools: NetTools, script: string): Promise<string> {
  return script === '' ? Promise.resolve('') : runTool(tools.nft, ['-f', '-'], script);
}
