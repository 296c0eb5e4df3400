/**
 * The Store contract on a real one-member etcd: a fresh etcd per test (the contract counts revisions
 * from an empty store), the next one started while the current test runs.
 */
import { after } from 'node:test';
import { etcdPool } from '../../testing/etcd.ts';
import { runStoreContract } from '../contract.ts';
import { EtcdStore } from './etcd-store.ts';

const pool = etcdPool({ members: 1 });
after(() => pool.close());

runStoreContract('etcd (1 member)', async () => {
  const cluster = await pool.take();
  return new EtcdStore({ url: cluster.url });
});
