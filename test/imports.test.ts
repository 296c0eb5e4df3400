/**
 * The direction of imports is part of the architecture (docs/architecture.md, "Code layout and
 * import rules"): core ← store, scheduler, api ← server; agent → api; cli, sdk → api. A wrong import
 * fails here, naming the file and line.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';

const root = resolve(import.meta.dirname, '..');
const src = join(root, 'src');

/** Which top-level folders of src/ each folder may import from (itself always allowed). */
const allowed: Record<string, string[]> = {
  core: [],
  store: ['core'],
  scheduler: ['core'],
  api: ['core'],
  transport: ['core', 'api'],
  server: ['core', 'store', 'scheduler', 'api', 'transport'],
  agent: ['core', 'api', 'transport'],
  cli: ['core', 'api'],
  sdk: ['core', 'api'],
  testing: ['core', 'store', 'scheduler', 'api', 'server', 'agent', 'cli', 'transport'],
};

/** Test code that is not a `.test.ts` file: `fixtures.ts`, `driver-fixtures.ts`, `start-task.fixture.ts`. */
const fixtures = /(^|\/)([a-z-]+-)?fixtures\.ts$|\.fixture\.ts$/;

/** The role verbs start the daemons in-process: the only way from cli into server and agent. */
const exceptions: { from: RegExp; to: string }[] = [
  { from: /^cli\/commands\/(up|server|agent)\.ts$/, to: 'server/index.ts' },
  { from: /^cli\/commands\/(up|server|agent)\.ts$/, to: 'agent/index.ts' },
  { from: /^cli\/daemon\.ts$/, to: 'server/index.ts' },
  { from: /^cli\/daemon\.ts$/, to: 'agent/index.ts' },
  // Restoring a snapshot works on the Store offline, through the server's package.
  { from: /^cli\/commands\/operator\.ts$/, to: 'server/index.ts' },
  // The Store contract suite is test code that lives beside the interface it checks.
  { from: /^store\/contract\.ts$/, to: 'testing/wait.ts' },
  // Test fixtures beside the code they test share the test helpers of src/testing.
  ...['testing/unprivileged.ts', 'testing/tools.ts'].map((to) => ({ from: fixtures, to })),
];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('imports between src/ folders follow the architecture', () => {
  const problems: string[] = [];
  for (const file of files(src)) {
    const rel = relative(src, file);
    if (rel.endsWith('.test.ts')) continue;
    const folder = rel.split('/')[0]!;
    const rules = allowed[folder];
    if (!rules) {
      problems.push(`${rel}: folder src/${folder} has no import rule in test/imports.test.ts`);
      continue;
    }
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      for (const m of line.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.[^'"]+)['"]/g)) {
        const target = relative(src, resolve(dirname(file), m[1]!));
        if (target.startsWith('..')) {
          problems.push(`${rel}:${i + 1}: imports outside src/: ${m[1]}`);
          continue;
        }
        const to = target.split('/')[0]!;
        if (to === folder || rules.includes(to)) continue;
        if (exceptions.some((e) => e.from.test(rel) && e.to === target)) continue;
        problems.push(`${rel}:${i + 1}: src/${folder} may not import src/${to} (${m[1]})`);
      }
    });
  }
  assert.deepEqual(problems, []);
});

test('the rule itself catches a wrong import', () => {
  // Guard against a regex that matches nothing: a known import must be seen.
  const text = readFileSync(join(src, 'server', 'index.ts'), 'utf8');
  assert.match(text, /from '\.\.\/store\/index\.ts'/);
});
