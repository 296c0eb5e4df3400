/**
 * From unum's sizes (millicores, MiB, a process count) to the values the kernel takes, for both
 * versions. Pure functions: the numbers here are what the limit files must hold.
 */
import { InvalidError, type FieldProblem } from '../../core/errors.ts';
import type { CgroupLimits } from './types.ts';

/** The CFS period unum uses, in microseconds (the kernel's default). */
export const CPU_PERIOD_MICROS = 100_000;
/** The smallest CFS quota the kernel accepts (1 ms). */
const MIN_QUOTA_MICROS = 1_000;
const MIN_SHARES = 2;
const MAX_SHARES = 262_144;

const MIB = 1024 * 1024;

/** v1 cpu.shares: 1024 per core, at least 2 (the kernel's minimum), at most 262144. */
export function cpuShares(millicores: number): number {
  return Math.min(MAX_SHARES, Math.max(MIN_SHARES, Math.round((millicores * 1024) / 1000)));
}

/**
 * v2 cpu.weight from v1 shares, the mapping runc and the kubelet use (shares 2..262144 onto weight
 * 1..10000): `1 + ((shares − 2) × 9999) / 262142`, rounded down, clamped to 1..10000.
 * 1 core = 1024 shares = weight 39; the default weight 100 is about 2.5 cores.
 */
export function cpuWeightFromShares(shares: number): number {
  return Math.min(10_000, Math.max(1, 1 + Math.floor(((shares - MIN_SHARES) * 9999) / 262_142)));
}

/** CFS quota for a hard cap: `millicores × 100` µs per 100 ms period (1000 millicores = one full period). */
export function cpuQuotaMicros(millicores: number): number {
  return Math.max(MIN_QUOTA_MICROS, Math.round(millicores * (CPU_PERIOD_MICROS / 1000)));
}

export function memoryBytes(memoryMiB: number): number {
  return memoryMiB * MIB;
}

/**
 * Rejects limits the kernel would refuse or misread, naming the field. The scheduler only hands out
 * validated job sizes, so this guards against programming errors rather than user input.
 */
export function validateLimits(limits: CgroupLimits): void {
  const fields: FieldProblem[] = [];
  if (!Number.isSafeInteger(limits.memoryMiB) || limits.memoryMiB < 1)
    fields.push({
      path: 'memoryMiB',
      message: `expected a positive integer, got ${String(limits.memoryMiB)}`,
    });
  if (!Number.isSafeInteger(limits.cpuMillicores) || limits.cpuMillicores < 1)
    fields.push({
      path: 'cpuMillicores',
      message: `expected a positive integer, got ${String(limits.cpuMillicores)}`,
    });
  if (!Number.isSafeInteger(limits.pids) || limits.pids < 1)
    fields.push({ path: 'pids', message: `expected a positive integer, got ${String(limits.pids)}` });
  if (fields.length > 0) throw InvalidError.fromFields(fields, 'invalid cgroup limits');
}
