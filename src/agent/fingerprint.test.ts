import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { constraintHolds } from '../scheduler/placement.ts';
import type { Node } from '../core/types.ts';
import { silentLogger } from '../core/log.ts';
import { requireExecDriverTools } from '../testing/tools.ts';
import { drivers } from './drivers/index.ts';
import { tempDir } from './fixtures.ts';
import { NVIDIA_SMI_ARGS, detectCgroupVersion, fingerprint, parseNvidiaSmi } from './fingerprint.ts';

/** A stand-in for the real tool (this machine has no GPU): prints what nvidia-smi prints for two A100s. */
const FAKE_NVIDIA_SMI = `#!/bin/sh
echo "$@" > "$(dirname "$0")/args"
cat <<'EOF'
0, GPU-3b1c5a3e-0d4f-4a55-9e2b-1f0a7c9d8e11, NVIDIA A100-SXM4-40GB, 40960
1, GPU-9f2d6c77-aa31-4b0e-8c5d-2e7b6f4a1c22, NVIDIA A100-SXM4-40GB, 40960
EOF
`;

void describe('fingerprint', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let fakeBin: string;
  const found = [drivers.exec({ logger: silentLogger(), enabled: true })];

  before(async () => {
    dir = await tempDir('unum-fp-');
    fakeBin = join(dir.path, 'bin');
    await mkdir(fakeBin);
    await writeFile(join(fakeBin, 'nvidia-smi'), FAKE_NVIDIA_SMI);
    await chmod(join(fakeBin, 'nvidia-smi'), 0o755);
  });
  after(async () => {
    await dir.cleanup();
  });

  void test('GPUs from nvidia-smi become devices and attributes usable in constraints', async () => {
    const fp = await fingerprint(dir.path, found, { path: `${fakeBin}:${process.env['PATH'] ?? ''}` });
    assert.equal(
      (await readFile(join(fakeBin, 'args'), 'utf8')).trim(),
      NVIDIA_SMI_ARGS.join(' '),
      'asked exactly what is parsed',
    );
    assert.deepEqual(fp.devices, [
      {
        type: 'gpu',
        vendor: 'nvidia',
        id: 'GPU-3b1c5a3e-0d4f-4a55-9e2b-1f0a7c9d8e11',
        name: 'NVIDIA A100-SXM4-40GB',
        index: 0,
        memoryMiB: 40960,
      },
      {
        type: 'gpu',
        vendor: 'nvidia',
        id: 'GPU-9f2d6c77-aa31-4b0e-8c5d-2e7b6f4a1c22',
        name: 'NVIDIA A100-SXM4-40GB',
        index: 1,
        memoryMiB: 40960,
      },
    ]);
    const a = fp.attributes;
    assert.equal(a['gpu.count'], '2');
    assert.equal(a['gpu.vendor'], 'nvidia');
    assert.equal(a['gpu.0.name'], 'NVIDIA A100-SXM4-40GB');
    assert.equal(a['gpu.1.uuid'], 'GPU-9f2d6c77-aa31-4b0e-8c5d-2e7b6f4a1c22');
    assert.equal(a['gpu.0.memory.mib'], '40960');

    const node = { id: 'n1', name: 'n1', attributes: a } as unknown as Node;
    assert.equal(constraintHolds(node, { attribute: 'gpu.count', operator: '=', value: '2' }), true);
    assert.equal(
      constraintHolds(node, { attribute: 'attr.gpu.0.name', operator: 'regexp', value: 'A100' }),
      true,
    );
    assert.equal(constraintHolds(node, { attribute: 'gpu.0.memory.mib', operator: 'exists' }), true);
  });

  void test('no nvidia-smi, or one that fails (no driver loaded): no GPUs, no gpu attributes', async () => {
    const none = await fingerprint(dir.path, found, { path: '/nonexistent' });
    assert.deepEqual(none.devices, []);
    assert.equal(none.attributes['gpu.count'], undefined);

    const broken = join(dir.path, 'broken');
    await mkdir(broken);
    await writeFile(
      join(broken, 'nvidia-smi'),
      '#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n',
    );
    await chmod(join(broken, 'nvidia-smi'), 0o755);
    const failed = await fingerprint(dir.path, found, { path: broken });
    assert.deepEqual(failed.devices, []);
  });

  void test('parses odd lines: a comma in a name, memory not available, garbage', () => {
    assert.deepEqual(
      parseNvidiaSmi(
        '1, GPU-b, Tesla K80, rev 2, [N/A]\nNo devices were found\n\n0, GPU-a, Tesla T4, 15360\r\n',
      ),
      [
        { type: 'gpu', vendor: 'nvidia', id: 'GPU-a', name: 'Tesla T4', index: 0, memoryMiB: 15360 },
        { type: 'gpu', vendor: 'nvidia', id: 'GPU-b', name: 'Tesla K80, rev 2', index: 1 },
      ],
    );
  });

  void test('CPU, memory, disk and cgroup attributes are there', async () => {
    requireExecDriverTools(); // driver.exec is '1' only where the driver can run tasks
    const fp = await fingerprint(dir.path, found, { path: '/nonexistent' });
    const a = fp.attributes;
    assert.equal(a['cpu.cores'], String(os.cpus().length));
    assert.ok(a['cpu.model'] !== undefined && a['cpu.model'] !== '');
    assert.ok(a['cpu.mhz'] === undefined || Number(a['cpu.mhz']) > 0);
    assert.equal(a['memory.mib'], String(fp.resources.memory));
    assert.ok(Number(a['disk.total.mib']) > 0);
    assert.ok(Number(a['disk.free.mib']) <= Number(a['disk.total.mib']));
    assert.equal(a['disk.free.mib'], String(fp.resources.disk));
    assert.equal(a['cgroup.version'], detectCgroupVersion());
    assert.equal(a['driver.exec'], '1');
    // With what isolation detection found, exec says whether it isolates.
    const isolated = await fingerprint(dir.path, found, {
      path: '/nonexistent',
      isolation: { namespaces: true, unprivilegedUser: true, cgroups: { version: 'v2' } },
    });
    assert.equal(isolated.attributes['driver.exec.isolated'], 'true');
    assert.equal(isolated.attributes['cgroup.version'], 'v2');
    const bare = await fingerprint(dir.path, found, {
      path: '/nonexistent',
      isolation: { namespaces: false, unprivilegedUser: false, cgroups: undefined },
    });
    assert.equal(bare.attributes['driver.exec.isolated'], 'false');
  });

  void test('cgroup version from the layout of the cgroup file system', async () => {
    const v2 = join(dir.path, 'cg2');
    await mkdir(v2);
    await writeFile(join(v2, 'cgroup.controllers'), 'cpu memory pids\n');
    const v1 = join(dir.path, 'cg1');
    await mkdir(join(v1, 'memory'), { recursive: true });
    assert.equal(detectCgroupVersion(v2), 'v2');
    assert.equal(detectCgroupVersion(v1), 'v1');
    assert.equal(detectCgroupVersion(join(dir.path, 'nothing')), 'none');
  });
});
