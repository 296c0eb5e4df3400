/**
 * The Store contract: every backend runs this suite (`runStoreContract('sqlite', () => open())`).
 * Each test gets a fresh store from `newStore` and closes it. Tests wait for conditions with a
 * deadline (`waitFor`), never on a fixed delay, and assert no timings. The tests live in
 * contract/, one file per topic.
 */
import { describe } from 'node:test';
import { waitFor } from '../testing/wait.ts';
import type { Store } from './types.ts';
import { compactionContract } from './contract/compaction.ts';
import { contractContext } from './contract/harness.ts';
import { kvContract } from './contract/kv.ts';
import { leaseContract } from './contract/lease.ts';
import { recipesContract } from './contract/recipes.ts';
import { lifecycleContract } from './contract/lifecycle.ts';
import { txnContract } from './contract/txn.ts';
import { watchContract } from './contract/watch.ts';

export function runStoreContract(name: string, newStore: () => Promise<Store>): void {
  const context = contractContext(newStore, waitFor);
  void describe(`Store contract: ${name}`, () => {
    kvContract(context);
    txnContract(context);
    watchContract(context);
    compactionContract(context);
    leaseContract(context);
    lifecycleContract(context);
    recipesContract(context);
  });
}
