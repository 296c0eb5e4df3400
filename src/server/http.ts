/** Moved to src/transport (shared with the agent); kept so that server code compiles unchanged. */
export * from '../transport/index.ts';
