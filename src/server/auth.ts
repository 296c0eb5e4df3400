/** Moved to src/transport/auth.ts (shared with the agent); kept so that server code compiles unchanged. */
export * from '../transport/auth.ts';
