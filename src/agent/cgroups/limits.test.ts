import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidError } from '../../core/errors.ts';
import { cpuQuotaMicros, cpuShares, cpuWeightFromShares, memoryBytes, validateLimits } from './limits.ts';

test('cpu.shares is 1024 per core, at least 2 and at most 262144', () => {
  assert.equal(cpuShares(1000), 1024);
  assert.equal(cpuShares(500), 512);
  assert.equal(cpuShares(250), 256);
  assert.equal(cpuShares(100), 102);
  assert.equal(cpuShares(1), 2);
  assert.equal(cpuShares(1_000_000), 262_144);
});

test('cpu.weight maps shares 2..262144 onto 1..10000 (the runc/kubelet formula)', () => {
  assert.equal(cpuWeightFromShares(2), 1);
  assert.equal(cpuWeightFromShares(262_144), 10_000);
  assert.equal(cpuWeightFromShares(1024), 39);
  assert.equal(cpuWeightFromShares(512), 20);
  assert.equal(cpuWeightFromShares(0), 1, 'clamped');
  assert.equal(cpuWeightFromShares(1_000_000), 10_000, 'clamped');
});

test('the hard cap is millicores × 100 µs per 100 ms period, at least the kernel minimum of 1 ms', () => {
  assert.equal(cpuQuotaMicros(500), 50_000);
  assert.equal(cpuQuotaMicros(1000), 100_000);
  assert.equal(cpuQuotaMicros(2500), 250_000);
  assert.equal(cpuQuotaMicros(5), 1_000);
});

test('memory is MiB in bytes', () => {
  assert.equal(memoryBytes(32), 33_554_432);
});

test('limits the kernel would refuse are rejected, naming each field', () => {
  validateLimits({ memoryMiB: 1, cpuMillicores: 1, pids: 1 });
  assert.throws(
    () => validateLimits({ memoryMiB: 0.5, cpuMillicores: -1, pids: Number.NaN }),
    (err: unknown) => {
      assert.ok(err instanceof InvalidError);
      assert.deepEqual(
        err.fields.map((f) => f.path),
        ['memoryMiB', 'cpuMillicores', 'pids'],
      );
      return true;
    },
  );
});
