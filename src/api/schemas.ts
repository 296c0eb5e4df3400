/**
 * Validation of API request bodies other than job files (those go through parseJobSpec). One zod
 * schema per body; `parseBody` returns the typed value or throws InvalidError naming field paths.
 */
import { z } from 'zod';
import { CAPABILITIES } from '../core/acl.ts';
import { formatDuration, parseDuration } from '../core/duration.ts';
import { InvalidError } from '../core/errors.ts';
import { describeIssues } from '../core/job-spec.ts';
import type { AllocStatusUpdate, NodeRegistration } from './types.ts';

const nonNegInt = z.number().int().min(0);

export const NodeRegistrationSchema = z.strictObject({
  id: z.string().min(1).max(128),
  name: z.string().min(1).max(256),
  address: z.string().url(),
  resources: z.strictObject({ cpu: nonNegInt, memory: nonNegInt, disk: nonNegInt }),
  reserved: z.strictObject({ cpu: nonNegInt, memory: nonNegInt }),
  attributes: z.record(z.string(), z.string()),
  drivers: z.record(
    z.string(),
    z.strictObject({ detected: z.boolean(), healthy: z.boolean(), description: z.string().optional() }),
  ),
  devices: z
    .array(
      z.strictObject({
        type: z.enum(['gpu']),
        vendor: z.string().min(1).max(64),
        id: z.string().min(1).max(256),
        name: z.string().max(256),
        index: nonNegInt.optional(),
        memoryMiB: nonNegInt.optional(),
      }),
    )
    .max(1024)
    .optional(),
  portRange: z
    .strictObject({ min: z.number().int().min(1).max(65535), max: z.number().int().min(1).max(65535) })
    .refine((r) => r.min <= r.max, { message: 'min must not exceed max' }),
});

const TaskEventSchema = z.strictObject({
  time: z.number(),
  type: z.enum([
    'received',
    'started',
    'terminated',
    'restarting',
    'not-restarting',
    'driver-failure',
    'killing',
    'killed',
    'health',
    'reattached',
    'limit-exceeded',
  ]),
  message: z.string(),
  exitCode: z.number().int().optional(),
  signal: z.string().optional(),
});

const TaskStateSchema = z.strictObject({
  state: z.enum(['pending', 'running', 'dead']),
  failed: z.boolean(),
  restarts: nonNegInt,
  pid: z.number().int().optional(),
  startedAt: z.number().optional(),
  finishedAt: z.number().optional(),
  exitCode: z.number().int().optional(),
  signal: z.string().optional(),
  oomKilled: z.boolean().optional(),
  events: z.array(TaskEventSchema).max(100),
});

export const AllocStatusUpdatesSchema = z.strictObject({
  updates: z
    .array(
      z.strictObject({
        allocId: z.string().min(1),
        clientStatus: z.enum(['pending', 'running', 'complete', 'failed', 'lost']),
        clientDescription: z.string().optional(),
        taskStates: z.record(z.string(), TaskStateSchema),
        healthy: z.boolean().optional(),
      }),
    )
    .max(10_000),
});

export const JobBodySchema = z.strictObject({ job: z.unknown() });

export function parseBody<S extends z.ZodType>(schema: S, body: unknown, what: string): z.output<S> {
  if (body === undefined) throw new InvalidError(`${what}: the request needs a JSON body`);
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  throw InvalidError.fromFields(describeIssues(r.error.issues, body, schema), `invalid ${what}`);
}

// Compile-time checks that the schemas produce the wire types.
export type _CheckNode = NodeRegistration extends z.output<typeof NodeRegistrationSchema> ? true : never;
export type _CheckUpdate = AllocStatusUpdate extends z.output<
  typeof AllocStatusUpdatesSchema
>['updates'][number]
  ? true
  : never;

export function bodyJsonSchema(schema: z.ZodType): Record<string, unknown> {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}

/** A node registration as validated (optional fields may hold undefined). */
export type ParsedNodeRegistration = z.output<typeof NodeRegistrationSchema>;
/** An allocation status report as validated (optional fields may hold undefined). */
export type ParsedAllocStatusUpdate = z.output<typeof AllocStatusUpdatesSchema>['updates'][number];

export const ACL_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const aclName = z.string().regex(ACL_NAME, 'expected 1-63 lower-case letters, digits, ".", "_" or "-"');

export const AclPolicyBodySchema = z.strictObject({
  description: z.string().max(1024).optional(),
  rules: z
    .array(
      z.strictObject({
        namespace: z
          .string()
          .regex(/^(\*|[a-z0-9][a-z0-9-]{0,62}\*?)$/, 'expected a namespace, "*" or a prefix ending in "*"'),
        capabilities: z.array(z.enum(CAPABILITIES)).min(1),
      }),
    )
    .min(1)
    .max(100),
});

export const AclTokenBodySchema = z.strictObject({
  name: z.string().min(1).max(128),
  policies: z.array(aclName).max(100).default([]),
  management: z.boolean().default(false),
  /** Lifetime, e.g. "24h"; none: until revoked. */
  ttl: z.string().optional(),
});

/** A drain's deadline when none is given, and the longest one. */
export const DEFAULT_DRAIN_DEADLINE_MS = 3_600_000;
export const MAX_DRAIN_DEADLINE_MS = 30 * 86_400_000;

/**
 * A drain deadline as given (`"30m"`, `"1h"`, `"0s"` for at once, or milliseconds): its length, or
 * what is wrong with it. The API and the CLI judge it alike.
 */
export function drainDeadline(input: string | number): { ms: number } | { problem: string } {
  const ms = parseDuration(input);
  if (ms === undefined)
    return { problem: 'expected a duration like "30m" or "1h" ("0s": stop everything now)' };
  if (ms > MAX_DRAIN_DEADLINE_MS)
    return { problem: `expected a duration of at most ${formatDuration(MAX_DRAIN_DEADLINE_MS)}` };
  return { ms };
}

export const NodeDrainBodySchema = z
  .strictObject({
    /** How long allocations have to move before what is left is stopped; default 1h. */
    deadline: z
      .union([z.string(), z.number()], { error: 'expected a duration like "30m" or "1h"' })
      .transform((v, ctx) => {
        const d = drainDeadline(v);
        if ('ms' in d) return d.ms;
        ctx.addIssue({ code: 'custom', message: d.problem });
        return z.NEVER;
      })
      .optional(),
    /** Ends the drain under way; the node is eligible again. */
    cancel: z.boolean({ error: 'expected true or false' }).optional(),
  })
  .refine((b) => !(b.cancel === true && b.deadline !== undefined), {
    message: 'give a deadline to drain, or cancel: true to stop draining, not both',
    path: ['cancel'],
  });

export const NodeEligibilityBodySchema = z.strictObject({
  eligible: z.boolean({ error: 'expected true (new work may be placed there) or false' }),
});

export const JoinTokenBodySchema = z.strictObject({
  /** Lifetime, e.g. "24h" (default 24h, at most 30 days). */
  ttl: z.string().max(32).optional(),
  description: z.string().max(256).optional(),
});

/** A certificate request, PEM: a few hundred bytes for a P-256 key. */
const csrPem = z
  .string()
  .max(16_384)
  .regex(/-----BEGIN CERTIFICATE REQUEST-----/, 'expected a PEM certificate request');

export const JoinBodySchema = z.strictObject({
  token: z.string().min(1).max(256),
  csr: csrPem,
});

export const RenewBodySchema = z.strictObject({ csr: csrPem });
