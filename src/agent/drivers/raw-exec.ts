/**
 * The `raw_exec` driver: runs a program as the agent's own user with no isolation at all (no
 * namespaces, no cgroup, no uid change; `user:` is ignored). Off unless the operator enables it
 * (`enableRawExec`), because a task then has every right the agent has. Like exec without a sandbox,
 * the task runs behind a shell that records its exit code, so a restarted agent re-attaches to it.
 */
import type { DriverInfo } from '../../core/types.ts';
import { statusPathFor } from './exec.ts';
import { checkCommand } from './process.ts';
import { launch, reattach } from './task-process.ts';
import type { Driver, DriverOptions, TaskConfig, TaskHandle, TaskHandleState } from './types.ts';

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
        throw new Error(
          'the raw_exec driver is disabled on this node (enable raw_exec in the agent configuration)',
        );
      await checkCommand(config);
      return launch({
        driver: 'raw_exec',
        config,
        wrapper: 'sh',
        argv: [config.command, ...config.args],
        statusPath: statusPathFor(config),
        logger: logger.child({ allocId: config.allocId, task: config.task }),
      });
    },
    recover(state: TaskHandleState): Promise<TaskHandle | undefined> {
      if (state.version !== 2 || state.driver !== 'raw_exec') return Promise.resolve(undefined);
      return Promise.resolve(reattach(state, undefined, logger));
    },
  };
}
