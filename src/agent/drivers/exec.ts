/**
 * The `exec` driver: the default way to run a program. Today a task runs in its own process group with
 * its output in log files; the next issue adds isolation here (cgroup limits, namespaces, an
 * unprivileged user), which is the difference from raw_exec.
 */
import type { DriverInfo } from '../../core/types.ts';
import { spawnTask } from './process.ts';
import type { Driver, DriverOptions, TaskConfig, TaskHandle } from './types.ts';

export function createExecDriver(options: DriverOptions): Driver {
  const logger = options.logger.child({ driver: 'exec' });
  return {
    name: 'exec',
    fingerprint(): Promise<DriverInfo> {
      if (process.platform === 'win32')
        return Promise.resolve({ detected: false, healthy: false, description: 'needs a POSIX system' });
      if (!options.enabled)
        return Promise.resolve({ detected: true, healthy: false, description: 'disabled by configuration' });
      return Promise.resolve({
        detected: true,
        healthy: true,
        description: 'process group per task; isolation (cgroups, unprivileged user) not yet enforced',
      });
    },
    start(config: TaskConfig): Promise<TaskHandle> {
      return spawnTask('exec', config, logger.child({ allocId: config.allocId, task: config.task }));
    },
  };
}
