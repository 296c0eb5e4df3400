/**
 * The job file schema (v1): one zod schema gives validation, the normalized TypeScript types and the
 * JSON Schema published in the OpenAPI document. `parseJobSpec` is the only way user input becomes a
 * `JobSpec`; everything downstream trusts the type.
 */
import { z } from 'zod';
import { formatDuration, parseDuration } from './duration.ts';
import { InvalidError, type FieldProblem } from './errors.ts';
import { isValidName } from './ids.ts';
import { regexpProblem } from './regexp.ts';

export const JOB_TYPES = ['service', 'batch'] as const;
export type JobType = (typeof JOB_TYPES)[number];
export const DRIVERS = ['exec', 'raw_exec'] as const;
export const NETWORK_MODES = ['bridge', 'host'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];
/** The node attribute that says a group may use `network: { mode: host }` there (`allowed`). */
export const HOST_NETWORK_ATTRIBUTE = 'network.host';
export const KILL_SIGNALS = [
  'SIGTERM',
  'SIGINT',
  'SIGQUIT',
  'SIGHUP',
  'SIGUSR1',
  'SIGUSR2',
  'SIGKILL',
] as const;

/** Absurd beyond these: no machine has 1000 cores or 16 TiB of memory per task. */
export const MAX_CPU = 1_000_000;
export const MAX_MEMORY = 16 * 1024 * 1024;
/** An allocation's disk (MiB): 1 PiB, beyond any one machine's. */
export const MAX_DISK = 1024 * 1024 * 1024;
/** `ephemeral.sizeMiB` of a group that sets none, unless the server is given another (`--alloc-disk-mib`). */
export const DEFAULT_ALLOC_DISK_MIB = 1024;
export const MAX_COUNT = 10_000;
/** Bounds on the shape of one job: the scheduler's work grows with each of them. */
export const MAX_GROUPS = 100;
export const MAX_TASKS = 100;
export const MAX_CONSTRAINTS = 64;
export const MAX_SERVICES = 64;
export const MAX_PORTS = 64;

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/**
 * Limits on durations (milliseconds). Restart and reschedule delays have a floor: a task that exits
 * at once and restarts without a pause writes its status and events many times a second.
 */
export const DURATION_LIMITS = {
  checkInterval: { max: HOUR },
  checkTimeout: { max: 5 * MINUTE },
  killTimeout: { max: HOUR },
  policyInterval: { max: 7 * DAY },
  delay: { min: SECOND, max: DAY },
} as const;

const name = (what: string) =>
  z.string({ error: `expected a ${what} name (string)` }).refine(isValidName, {
    message: `expected a ${what} name: lower-case letters, digits, '-', '_' or '.', 1-128 characters, starting and ending with a letter or digit`,
  });

const duration = (example: string, limits: { min?: number; max: number }) =>
  z
    .union([z.string(), z.number()], { error: `expected a duration like "${example}"` })
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `expected a duration like "500ms", "2s" or "${example}"` });
        return z.NEVER;
      }
      if (ms > limits.max) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration of at most ${formatDuration(limits.max)}`,
        });
        return z.NEVER;
      }
      if (limits.min !== undefined && ms < limits.min) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration of at least ${formatDuration(limits.min)} (a restart without a pause loops)`,
        });
        return z.NEVER;
      }
      return ms;
    });

/** A string that reaches a process (program, argument, environment): NUL would cut it short. */
const execString = (error: string) =>
  z.string({ error }).refine((s) => !s.includes('\0'), { message: 'must not contain a NUL character' });

const positiveInt = (unit: string, max: number) =>
  z
    .number({ error: `expected a positive integer (${unit})` })
    .int({ error: `expected a positive integer (${unit})` })
    .min(1, { error: `expected a positive integer (${unit})` })
    .max(max, { error: `at most ${max} ${unit}: no machine offers more` });

const count = z
  .number({ error: 'expected a whole number of instances, 0 or more' })
  .int({ error: 'expected a whole number of instances, 0 or more' })
  .min(0, { error: 'expected a whole number of instances, 0 or more' })
  .max(MAX_COUNT, { error: `at most ${MAX_COUNT} instances per group` });

/** `gpu`, or `<vendor>/gpu` (e.g. `nvidia/gpu`). */
const DEVICE_NAME = /^(?:[a-z0-9][a-z0-9-]*\/)?gpu$/;

const DeviceRequestSchema = z.strictObject({
  name: z
    .string()
    .regex(DEVICE_NAME, { error: 'expected a device name: "gpu" or "<vendor>/gpu", e.g. "nvidia/gpu"' }),
  count: z.number().int().min(1).max(64, { error: 'expected 1 to 64 devices' }).default(1),
});

const ResourcesSchema = z.strictObject({
  cpu: positiveInt('millicores; 1000 = one core', MAX_CPU).default(100),
  memory: positiveInt('MiB', MAX_MEMORY).default(256),
  /** Devices the task needs whole (GPUs), matched against the node's fingerprinted devices. */
  devices: z.array(DeviceRequestSchema).default([]),
});

const PortSchema = z.union(
  [
    name('port'),
    z.strictObject({
      name: name('port'),
      static: z.number().int().min(1).max(65535, { error: 'expected a port number 1-65535' }).optional(),
    }),
  ],
  { error: 'expected a port name, or { name, static }' },
);

const CheckSchema = z.strictObject({
  type: z.enum(['http', 'tcp'], { error: 'expected "http" or "tcp"' }),
  path: z.string().startsWith('/', { error: 'expected an HTTP path starting with "/"' }).optional(),
  interval: duration('10s', DURATION_LIMITS.checkInterval).default(10_000),
  timeout: duration('2s', DURATION_LIMITS.checkTimeout).default(2_000),
});

const ServiceSchema = z.strictObject({
  name: name('service'),
  port: name('port'),
  tags: z.array(z.string()).default([]),
  check: CheckSchema.optional(),
});

const RestartSchema = z.strictObject({
  attempts: z.number().int().min(0).max(1000).optional(),
  interval: duration('10m', DURATION_LIMITS.policyInterval).optional(),
  delay: duration('1s', DURATION_LIMITS.delay).optional(),
  maxDelay: duration('30s', DURATION_LIMITS.delay).optional(),
  mode: z.enum(['fail', 'delay'], { error: 'expected "fail" or "delay"' }).optional(),
});

const RescheduleSchema = z.strictObject({
  attempts: z.number().int().min(0).max(1000).optional(),
  unlimited: z.boolean().optional(),
  interval: duration('1h', DURATION_LIMITS.policyInterval).optional(),
  delay: duration('5s', DURATION_LIMITS.delay).optional(),
  maxDelay: duration('1m', DURATION_LIMITS.delay).optional(),
});

const ConstraintSchema = z
  .strictObject({
    attribute: z.string().min(1),
    operator: z
      .enum(['=', '!=', 'regexp', 'exists'], { error: 'expected "=", "!=", "regexp" or "exists"' })
      .default('='),
    value: z.string().optional(),
  })
  .superRefine((c, ctx) => {
    if (c.operator !== 'regexp') return;
    const problem =
      c.value === undefined ? 'expected the regular expression to match' : regexpProblem(c.value);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['value'], message: problem });
  });

const constraints = z
  .array(ConstraintSchema)
  .max(MAX_CONSTRAINTS, { error: `at most ${MAX_CONSTRAINTS} constraints` })
  .default([]);

const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' });

const TaskSchema = z.strictObject({
  name: name('task'),
  driver: z.enum(DRIVERS, { error: `expected one of ${DRIVERS.join(', ')}` }).default('exec'),
  command: execString('expected the program to run (string)').refine((s) => s.length > 0, {
    message: 'expected the program to run',
  }),
  args: z.array(execString('expected a string argument')).default([]),
  env: z.record(envName, execString('expected a string value')).default({}),
  user: execString('expected a user name (string)')
    .refine((s) => s.length > 0, { message: 'expected a user name' })
    .optional(),
  resources: ResourcesSchema.default({ cpu: 100, memory: 256, devices: [] }),
  killTimeout: duration('5s', DURATION_LIMITS.killTimeout).default(5_000),
  killSignal: z
    .enum(KILL_SIGNALS, { error: `expected one of ${KILL_SIGNALS.join(', ')}` })
    .default('SIGTERM'),
});

const GroupSchema = z.strictObject({
  name: name('group'),
  count: count.default(1),
  network: z
    .strictObject({
      /**
       * `bridge`: the allocation's own network namespace, its ports published on the node's
       * addresses (as root; rootless agents share the host's network). `host`: the node's own
       * network, only on nodes whose operator allows it (--allow-host-network).
       */
      mode: z.enum(NETWORK_MODES, { error: 'expected "bridge" or "host"' }).default('bridge'),
      ports: z
        .array(PortSchema)
        .max(MAX_PORTS, { error: `at most ${MAX_PORTS} ports` })
        .default([]),
    })
    .default({ mode: 'bridge', ports: [] }),
  tasks: z
    .array(TaskSchema)
    .min(1, { error: 'a group needs at least one task' })
    .max(MAX_TASKS, { error: `at most ${MAX_TASKS} tasks per group` }),
  services: z
    .array(ServiceSchema)
    .max(MAX_SERVICES, { error: `at most ${MAX_SERVICES} services` })
    .default([]),
  restart: RestartSchema.default({}),
  reschedule: RescheduleSchema.default({}),
  constraints,
  /** How a node drain moves the group's instances: `maxParallel` at a time, each replacement running first. */
  migrate: z
    .strictObject({
      maxParallel: z
        .number({ error: 'expected a whole number of instances, 1 or more' })
        .int({ error: 'expected a whole number of instances, 1 or more' })
        .min(1, { error: 'expected a whole number of instances, 1 or more' })
        .max(MAX_COUNT, { error: `at most ${MAX_COUNT} instances` })
        .default(1),
    })
    .default({ maxParallel: 1 }),
  /** The allocation's disk: its task directories and shared `alloc/` (logs apart); parseJobSpec fills it in. */
  ephemeral: z.strictObject({ sizeMiB: positiveInt('MiB', MAX_DISK) }).optional(),
});

const JobSchemaRaw = z.strictObject({
  job: name('job'),
  namespace: name('namespace').default('default'),
  type: z.enum(JOB_TYPES, { error: `expected one of ${JOB_TYPES.join(', ')}` }).default('service'),
  priority: z
    .number()
    .int()
    .min(1)
    .max(100, { error: 'expected an integer priority from 1 to 100' })
    .default(50),
  meta: z.record(z.string(), z.string()).default({}),
  constraints,
  groups: z
    .array(GroupSchema)
    .min(1, { error: 'a job needs at least one group' })
    .max(MAX_GROUPS, { error: `at most ${MAX_GROUPS} groups per job` }),
});

/** Normalized shapes: every default applied, durations in milliseconds. */
export interface PortSpec {
  name: string;
  static?: number;
}
export interface RestartPolicy {
  /** Restarts allowed within `interval` before the allocation fails. */
  attempts: number;
  interval: number;
  /** First delay; doubles on each restart up to `maxDelay`. */
  delay: number;
  maxDelay: number;
  /** `fail`: the allocation fails when attempts are used up; `delay`: wait out the interval and go on. */
  mode: 'fail' | 'delay';
}
export interface ReschedulePolicy {
  /** Replacements allowed within `interval` (ignored when `unlimited`). */
  attempts: number;
  unlimited: boolean;
  interval: number;
  delay: number;
  maxDelay: number;
}
export type ConstraintSpec = z.output<typeof ConstraintSchema>;
export type ServiceSpec = z.output<typeof ServiceSchema>;
export type TaskSpec = z.output<typeof TaskSchema>;
export type TaskResources = z.output<typeof ResourcesSchema>;
export type DeviceRequest = z.output<typeof DeviceRequestSchema>;
/** The sizes the scheduler packs: cpu and memory. */
export type ComputeResources = Pick<TaskResources, 'cpu' | 'memory'>;
export interface GroupSpec extends Omit<z.output<typeof GroupSchema>, 'network' | 'restart' | 'reschedule'> {
  network: { mode: NetworkMode; ports: PortSpec[] };
  restart: RestartPolicy;
  reschedule: ReschedulePolicy;
}
export interface JobSpec extends Omit<z.output<typeof JobSchemaRaw>, 'groups'> {
  groups: GroupSpec[];
}
export type JobSpecInput = z.input<typeof JobSchemaRaw>;

/** Type-dependent defaults: services restart and reschedule forever, batch jobs give up. */
const RESTART_DEFAULTS: Record<JobType, RestartPolicy> = {
  service: { attempts: 3, interval: 10 * 60_000, delay: 1_000, maxDelay: 30_000, mode: 'fail' },
  batch: { attempts: 1, interval: 24 * 3_600_000, delay: 1_000, maxDelay: 30_000, mode: 'fail' },
};
const RESCHEDULE_DEFAULTS: Record<JobType, ReschedulePolicy> = {
  service: { attempts: 0, unlimited: true, interval: 0, delay: 5_000, maxDelay: 60_000 },
  batch: { attempts: 1, unlimited: false, interval: 24 * 3_600_000, delay: 5_000, maxDelay: 60_000 },
};

function definedOnly<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

export const JobSpecSchema = JobSchemaRaw.superRefine((job, ctx) => {
  const seenGroups = new Set<string>();
  job.groups.forEach((g, gi) => {
    if (seenGroups.has(g.name))
      ctx.addIssue({
        code: 'custom',
        path: ['groups', gi, 'name'],
        message: `duplicate group name "${g.name}"`,
      });
    seenGroups.add(g.name);
    const tasks = new Set<string>();
    g.tasks.forEach((t, ti) => {
      if (t.name === 'alloc')
        ctx.addIssue({
          code: 'custom',
          path: ['groups', gi, 'tasks', ti, 'name'],
          message: '"alloc" is reserved (the directory the group\'s tasks share); choose another task name',
        });
      if (tasks.has(t.name))
        ctx.addIssue({
          code: 'custom',
          path: ['groups', gi, 'tasks', ti, 'name'],
          message: `duplicate task name "${t.name}"`,
        });
      tasks.add(t.name);
    });
    const ports = new Map<string, number | undefined>();
    g.network.ports.forEach((p, pi) => {
      const pname = typeof p === 'string' ? p : p.name;
      if (ports.has(pname))
        ctx.addIssue({
          code: 'custom',
          path: ['groups', gi, 'network', 'ports', pi],
          message: `duplicate port "${pname}"`,
        });
      ports.set(pname, typeof p === 'string' ? undefined : p.static);
    });
    g.services.forEach((s, si) => {
      if (!ports.has(s.port))
        ctx.addIssue({
          code: 'custom',
          path: ['groups', gi, 'services', si, 'port'],
          message: `no port named "${s.port}" in network.ports (known: ${[...ports.keys()].join(', ') || 'none'})`,
        });
      if (s.check?.type === 'http' && s.check.path === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['groups', gi, 'services', si, 'check', 'path'],
          message: 'an http check needs a path, e.g. "/health"',
        });
    });
  });
}).transform((job): JobSpec => {
  const restartBase = RESTART_DEFAULTS[job.type];
  const rescheduleBase = RESCHEDULE_DEFAULTS[job.type];
  return {
    ...job,
    groups: job.groups.map((g) => ({
      ...g,
      network: {
        mode: g.network.mode,
        ports: g.network.ports.map((p) => (typeof p === 'string' ? { name: p } : definedPort(p))),
      },
      restart: { ...restartBase, ...definedOnly(g.restart) },
      reschedule: { ...rescheduleBase, ...definedOnly(g.reschedule) },
    })),
  };
});

function definedPort(p: { name: string; static?: number | undefined }): PortSpec {
  return p.static === undefined ? { name: p.name } : { name: p.name, static: p.static };
}

/** The environment variable a port is exposed as: `http` → `UNUM_PORT_HTTP`. */
export function portEnvName(port: string): string {
  return `UNUM_PORT_${port.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/**
 * Total cpu and memory one allocation of the group asks for, and its disk (MiB; 0 for a group
 * stored before `ephemeral` existed).
 */
export function groupResources(g: GroupSpec): ComputeResources & { disk: number } {
  return g.tasks.reduce(
    (acc, t) => ({ ...acc, cpu: acc.cpu + t.resources.cpu, memory: acc.memory + t.resources.memory }),
    { cpu: 0, memory: 0, disk: g.ephemeral?.sizeMiB ?? 0 },
  );
}

/** Whether a node device satisfies a request name (`gpu` or `<vendor>/gpu`). */
export function deviceMatches(request: string, device: { type: string; vendor: string }): boolean {
  const [a, b] = request.split('/');
  return b === undefined ? device.type === a : device.vendor === a && device.type === b;
}
/**
 * Validates a decoded job document (from YAML or JSON) and returns it normalized, or throws an
 * InvalidError whose `fields` name each problem by path. A group without `ephemeral` gets
 * `allocDiskMiB` (the server's default; DEFAULT_ALLOC_DISK_MIB unless given): every job parsed
 * here has its disk size, so that the scheduler and the agent agree on it.
 */
export function parseJobSpec(input: unknown, defaults: { allocDiskMiB?: number } = {}): JobSpec {
  const result = JobSpecSchema.safeParse(input);
  if (!result.success)
    throw InvalidError.fromFields(describeIssues(result.error.issues, input), 'invalid job');
  const sizeMiB = defaults.allocDiskMiB ?? DEFAULT_ALLOC_DISK_MIB;
  return {
    ...result.data,
    // Always the last key, given or not: versions are compared as JSON (reconcile.ts).
    groups: result.data.groups.map(({ ephemeral, ...g }) => ({ ...g, ephemeral: ephemeral ?? { sizeMiB } })),
  };
}

type Issue = z.core.$ZodIssue;

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = input;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Turns zod issues into field problems worded for people, with a "did you mean" for unknown keys. */
export function describeIssues(
  issues: readonly Issue[],
  input: unknown,
  root: z.ZodType = JobSchemaRaw,
): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(root, issue.path);
      for (const key of issue.keys) {
        const hint = closest(key, known);
        out.push({
          path: formatPath([...issue.path, key]),
          message: `unknown field "${key}"${hint ? `; did you mean "${hint}"?` : ''}${known.length ? ` (known fields: ${known.join(', ')})` : ''}`,
        });
      }
      continue;
    }
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // Report the branch that got furthest, rather than "invalid input".
      const best = issue.errors.reduce((a, b) => (deepest(b) > deepest(a) ? b : a));
      if (deepest(best) > issue.path.length) {
        out.push(...describeIssues(best, input, root));
        continue;
      }
    }
    const got = valueAt(input, issue.path);
    const missing = got === undefined && (issue.code === 'invalid_type' || issue.code === 'custom');
    out.push({
      path: formatPath(issue.path),
      message: missing ? `required: ${issue.message}` : `${issue.message}, got ${show(got)}`,
    });
  }
  return out;
}

function deepest(issues: readonly Issue[]): number {
  return Math.max(0, ...issues.map((i) => i.path.length + (i.code === 'unrecognized_keys' ? 1 : 0)));
}

interface Inspectable {
  _zod: { def: Record<string, unknown> & { type: string } };
}

function unwrap(s: Inspectable): Inspectable {
  let cur = s;
  for (let i = 0; i < 20; i++) {
    const def = cur._zod.def;
    if (
      (def.type === 'optional' ||
        def.type === 'default' ||
        def.type === 'nullable' ||
        def.type === 'prefault') &&
      def['innerType']
    )
      cur = def['innerType'] as Inspectable;
    else if (def.type === 'pipe' && def['in']) cur = def['in'] as Inspectable;
    else return cur;
  }
  return cur;
}

function knownKeysAt(root: z.ZodType, path: readonly PropertyKey[]): string[] {
  let cur: Inspectable | undefined = unwrap(root as unknown as Inspectable);
  for (const p of path) {
    if (!cur) return [];
    const def: Inspectable['_zod']['def'] = cur._zod.def;
    if (def.type === 'array') cur = unwrap(def['element'] as Inspectable);
    else if (def.type === 'object') {
      const next: Inspectable | undefined = (def['shape'] as Record<string, Inspectable>)[String(p)];
      cur = next ? unwrap(next) : undefined;
    } else if (def.type === 'union') {
      const options = (def['options'] as Inspectable[]).map(unwrap);
      cur = options.find((o) => o._zod.def.type === 'object' || o._zod.def.type === 'array');
      if (cur) cur = unwrap(cur);
      const d2 = cur?._zod.def;
      if (d2?.type === 'object') cur = (d2['shape'] as Record<string, Inspectable>)[String(p)];
      else if (d2?.type === 'array') cur = d2['element'] as Inspectable;
      if (cur) cur = unwrap(cur);
    } else return [];
  }
  if (!cur) return [];
  let def = cur._zod.def;
  if (def.type === 'union') {
    const obj = (def['options'] as Inspectable[]).map(unwrap).find((o) => o._zod.def.type === 'object');
    if (!obj) return [];
    def = obj._zod.def;
  }
  return def.type === 'object' ? Object.keys(def['shape'] as object) : [];
}

/** The known key nearest to `key` by edit distance, when near enough to be a typo. */
export function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] ?? 0;
      prev[j] = Math.min(up + 1, (prev[j - 1] ?? 0) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length] ?? 0;
}

/** JSON Schema of a job file (input form), for the OpenAPI document and editors. */
export function jobSpecJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(JobSchemaRaw, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}
