/** The driver factories, chosen by a task's `driver` field. An explicit map, no registry magic. */
import { createExecDriver } from './exec/exec.ts';
import { createRawExecDriver } from './raw-exec.ts';
import type { Driver, DriverName, DriverOptions } from './types.ts';

export const drivers: Record<DriverName, (options: DriverOptions) => Driver> = {
  exec: createExecDriver,
  raw_exec: createRawExecDriver,
};

export type {
  Driver,
  DriverName,
  DriverOptions,
  ExitResult,
  TaskConfig,
  TaskHandle,
  TaskHandleState,
  TaskUsage,
} from './types.ts';
export { ExecError, describeExit } from './types.ts';
