/** How errors reach people: one line `error: ...`, field problems each on its own line, no stack traces. */
import { InvalidError } from '../core/errors.ts';
import { Reported, UsageError } from './context.ts';
import type { Out } from './output.ts';

/** Prints an error the way the CLI promises and picks the exit code (1 failed, 2 usage). */
export function report(
  err: unknown,
  stderr: Out,
  env: Readonly<Record<string, string | undefined>>,
  verb: string | undefined,
): number {
  if (err instanceof Reported) return err.exitCode;
  if (err instanceof UsageError) {
    stderr.write(`error: ${err.message}\n`);
    stderr.write(`Run "unum ${verb ? `${verb} ` : ''}--help" for usage.\n`);
    return 2;
  }
  stderr.write(formatError(err));
  if (env['UNUM_DEBUG'] === '1' && err instanceof Error) stderr.write(`${stackOf(err)}\n`);
  return 1;
}

/** `error: <message>`; an InvalidError lists each field problem on its own line. */
export function formatError(err: unknown, prefix = ''): string {
  if (err instanceof InvalidError && err.fields.length > 0) {
    const head = (err.message.split('\n')[0] ?? 'invalid').replace(/:$/, '');
    const lines = err.fields.map((f) => `  ${f.path === '' ? '' : `${f.path}: `}${f.message}`);
    return `error: ${prefix}${head}:\n${lines.join('\n')}\n`;
  }
  if (err instanceof Error) return `error: ${prefix}${err.message}\n`;
  return `error: ${prefix}${String(err)}\n`;
}

function stackOf(err: Error): string {
  let out = err.stack ?? String(err);
  let cause = err.cause;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    out += `\ncaused by: ${cause.stack ?? cause.message}`;
    cause = cause.cause;
  }
  return out;
}
