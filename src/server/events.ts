/** Building the Store writes that append cluster events, to ride in the same transaction as the change they describe. */
import { randomSuffix } from '../core/ids.ts';
import type { ClusterEvent } from '../core/types.ts';
import type { TxnOp } from '../store/types.ts';
import { keys } from './keys.ts';

export type NewEvent = Omit<ClusterEvent, 'index' | 'time'> & { time?: number };

/**
 * Event keys are unique: a random id of this process (apart from other servers) and a counter (apart
 * from the other events this process writes, thousands of them in one transaction for a large plan).
 */
const writerId = randomSuffix(8);
let sequence = 0;

export function eventOp(event: NewEvent, now = Date.now()): TxnOp {
  const time = event.time ?? now;
  sequence = (sequence + 1) % Number.MAX_SAFE_INTEGER;
  const suffix = `${writerId}-${sequence.toString(36).padStart(8, '0')}`;
  return { type: 'put', key: keys.event(time, suffix), value: JSON.stringify({ ...event, time }) };
}

export function putOp(key: string, value: unknown): TxnOp {
  return { type: 'put', key, value: JSON.stringify(value) };
}
