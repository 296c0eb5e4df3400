/**
 * The `raw_exec` driver: runs a program as the agent's own user with no isolation at all. Off unless
 * the operator enables it (`enableRawExec`), because a task then has every right the agent has.
 */
import type { DriverInfo } from '../../core/types.ts';
import { spawnTask } from './process.ts';
import type { Driver, DriverOptions, TaskConfig, TaskHandle } from './types.ts';

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
    start(config: TaskConfig): Promise<TaskHandle> {
      if (!options.enabled)
        return Promise.reject(
          new Error(
            'the raw_exec driver is disabled on this node (enable raw_exec in the agent configuration)',
          ),
        );
      return spawnTask('raw_exec', config, logger.child({ allocId: config.allocId, task: config.task }));
    },
  };
}
