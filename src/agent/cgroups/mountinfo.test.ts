import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mountOf, parseMountinfo } from './mountinfo.ts';

const SAMPLE = `23 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,relatime master:3 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
garbage line
`;

test('mountinfo lines are parsed, optional fields and escapes included', () => {
  const mounts = parseMountinfo(SAMPLE);
  assert.equal(mounts.length, 6);
  assert.deepEqual(mounts[2], {
    mountPoint: '/sys/fs/cgroup/cpu,cpuacct',
    root: '/',
    fsType: 'cgroup',
    mountOptions: ['rw', 'nosuid', 'nodev', 'noexec', 'relatime'],
    superOptions: ['rw', 'cpu', 'cpuacct'],
  });
  assert.equal(mounts[3]?.root, '/docker/abc');
  assert.deepEqual(mounts[3]?.mountOptions, ['ro', 'relatime']);
  assert.equal(mounts[4]?.fsType, 'cgroup2');
  assert.equal(mounts[5]?.mountPoint, '/mnt/with space');
});

test('mountOf finds the mount that holds a path (the longest mount point)', () => {
  const mounts = parseMountinfo(SAMPLE);
  assert.equal(mountOf(mounts, '/sys/fs/cgroup/memory/unum')?.fsType, 'cgroup');
  assert.equal(mountOf(mounts, '/sys/fs/cgroup/memory')?.superOptions.includes('memory'), true);
  assert.equal(mountOf(mounts, '/sys/fs/cgroup/memoryx')?.fsType, 'tmpfs');
  assert.equal(mountOf(mounts, '/home')?.fsType, 'ext4');
  assert.equal(mountOf([], '/x'), undefined);
});
