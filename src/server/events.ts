/** Building the Store writes that append cluster events, to ride in the same transaction as the change they describe. */
import { randomSuffix } from '../core/ids.ts';
import type { ClusterEvent } from '../core/types.ts';
import type { TxnOp } from '../store/types.ts';
import { keys } from './keys.ts';

export type NewEvent = Omit<ClusterEvent, 'index' | 'time'> & { time?: number };

export function eventOp(event: NewEvent, now = Date.now()): TxnOp {
  const time = event.time ?? now;
  return { type: 'put', key: keys.event(time, randomSuffix(3)), value: JSON.stringify({ ...event, time }) };
}

export function putOp(key: string, value: unknown): TxnOp {
  return { type: 'put', key, value: JSON.stringify(value) };
}
