/**
 * Test fixture: plays an agent that starts one task and dies at once. Reads
 * `{ driver, config, dataDir, isolation: 'auto' | 'off', taskOpenFiles? }` as JSON from argv[2], starts the task,
 * writes its handle state as JSON on stdout and exits without stopping it — the task keeps running,
 * as it does when the real agent goes down. The recover tests re-attach to it.
 */
import { silentLogger } from '../../core/log.ts';
import { detectIsolation } from './exec/isolation.ts';
import { drivers } from './index.ts';
import type { DriverName, TaskConfig } from './types.ts';

const input = JSON.parse(process.argv[2] ?? '{}') as {
  driver: DriverName;
  config: TaskConfig;
  dataDir: string;
  isolation: 'auto' | 'off';
  taskOpenFiles?: number;
};
const driver = drivers[input.driver]({
  logger: silentLogger(),
  enabled: true,
  dataDir: input.dataDir,
  isolation: await detectIsolation({ mode: input.isolation }),
  ...(input.taskOpenFiles !== undefined ? { taskOpenFiles: input.taskOpenFiles } : {}),
});
const handle = await driver.start(input.config);
process.stdout.write(`${JSON.stringify(handle.state)}\n`, () => process.exit(0));
