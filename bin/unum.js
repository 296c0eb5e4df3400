#!/usr/bin/env node
// Entry point. The repository runs TypeScript sources directly (Node's type stripping);
// the published package runs the JavaScript that `npm run build` emits into dist/.
import { existsSync } from 'node:fs';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `unum needs Node.js 24 or newer (this is ${process.version}).\n` +
      `Run it through npm, which uses the Node the project installs: npm ci && npx unum ...\n`,
  );
  process.exit(1);
}
// A checkout has src/ (run it, never a stale build); the published package has only dist/.
const source = new URL('../src/cli/main.ts', import.meta.url);
const entry = existsSync(source) ? source : new URL('../dist/src/cli/main.js', import.meta.url);
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
