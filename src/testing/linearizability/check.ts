/**
 * Re-checks a saved history: `node src/testing/linearizability/check.ts FILE.jsonl [--max-steps N]`.
 * Prints the verdict, the counts and, for a violation, the explanation. Exit code 0 linearizable,
 * 1 violation, 2 undecided (the search gave up), 3 unreadable input.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { checkHistory } from './checker.ts';
import { parseJsonLines, type Operation } from './history.ts';

export function main(argv: string[]): number {
  let file: string;
  let maxSteps: number | undefined;
  let history: Operation[];
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { 'max-steps': { type: 'string' } },
      allowPositionals: true,
    });
    if (positionals.length !== 1) throw new Error('usage: check.ts FILE.jsonl [--max-steps N]');
    file = positionals[0]!;
    if (values['max-steps'] !== undefined) {
      maxSteps = Number(values['max-steps']);
      if (!Number.isInteger(maxSteps) || maxSteps <= 0) {
        throw new Error(
          `--max-steps: expected a positive integer, got ${JSON.stringify(values['max-steps'])}`,
        );
      }
    }
    history = parseJsonLines(readFileSync(file, 'utf8'));
  } catch (err) {
    console.error((err as Error).message);
    return 3;
  }
  const started = performance.now();
  const result = checkHistory(history, maxSteps === undefined ? {} : { maxStepsPerKey: maxSteps });
  const ms = Math.round(performance.now() - started);
  console.log(`${file}: ${result.verdict}`);
  console.log(
    `operations: ${result.operations}, keys: ${result.keys}, search steps: ${result.steps}, ${ms} ms`,
  );
  if (result.verdict === 'violation') {
    console.log(`keys not linearizable: ${result.violations.join(', ')}`);
    console.log(result.explanation.text);
  }
  if (result.verdict !== 'linearizable' && result.undecided.length > 0) {
    console.log(`undecided (search gave up; raise --max-steps): ${result.undecided.join(', ')}`);
  }
  return result.verdict === 'linearizable' ? 0 : result.verdict === 'violation' ? 1 : 2;
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2));
