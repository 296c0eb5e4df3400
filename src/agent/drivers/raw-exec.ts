/**
 * The `raw_exec` driver: runs a program as the agent's own user with no isolation at all (no
 * namespaces, no cgroup, no uid change: a `user:` other than the agent's own is refused). Off unless the operator enables it
 * (`enableRawExec`), because a task then has every right the agent has. Like exec without a sandbox,
 * the task runs behind a shell that records its exit code, so a restarted agent re-attaches to it.
 */
import { UnavailableError } from '../../core/errors.ts';
import type { DriverInfo } from '../../core/types.ts';
import { checkCommand } from './process.ts';
import { launch, statusPathFor } from './launch.ts';
import { processHandleData } from './handle-state.ts';
import { reattach } from './task-process.ts';
import { currentUserName } from './accounts.ts';
import {
  ExecError,
  type Driver,
  type DriverOptions,
  type TaskConfig,
  type TaskHandle,
  type TaskHandleState,
} from './types.ts';

export function createRawExecDriver(options: DriverOptions): Driver {
  const logger = options.logger.child({ driver: 'raw_exec' });
  return {
    name: 'raw_exec',
    fingerprint(): Promise<DriverInfo> {
      if (process.platform === 'win32')
        return Promise.resolve({ detected: false, healthy: false, description: 'needs a POSIX system' });
      if (!options.enabled)
        return Promise.resolve({
          detected: false,
          healthy: false,
          description: 'disabled: enable raw_exec in the agent configuration to run tasks without isolation',
        });
      return Promise.resolve({ detected: true, healthy: true, description: 'runs tasks without isolation' });
    },
    async start(config: TaskConfig): Promise<TaskHandle> {
      if (!options.enabled)
        throw new UnavailableError(
          'the raw_exec driver is disabled on this node (enable raw_exec in the agent configuration)',
        );
      // No uid change here: a job that asks for another user must not silently run as the agent's.
      if (config.user !== undefined && config.user !== currentUserName())
        throw new ExecError(
          `user ${JSON.stringify(config.user)} can not be used with raw_exec: it runs tasks as the agent's user ${JSON.stringify(currentUserName())} (use the exec driver, where the operator allows that user)`,
          'EPERM',
        );
      await checkCommand(config);
      return launch({
        driver: 'raw_exec',
        config,
        wrapper: 'sh',
        argv: [config.command, ...config.args],
        statusPath: statusPathFor(config),
        ...(options.taskOpenFiles !== undefined ? { openFiles: options.taskOpenFiles } : {}),
        logger: logger.child({ allocId: config.allocId, task: config.task }),
      });
    },
    recover(state: TaskHandleState): Promise<TaskHandle | undefined> {
      const data = processHandleData(state, 'raw_exec');
      if (data === undefined) return Promise.resolve(undefined);
      return Promise.resolve(reattach('raw_exec', data, undefined, logger));
    },
  };
}
