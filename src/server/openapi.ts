/** The OpenAPI 3.1 document at /v1/openapi.json, generated from the route table so it cannot drift. */
import { STATUS_BY_CODE } from '../api/errors.ts';
import type { Route } from '../transport/index.ts';

export function openApiDocument(routes: readonly Route[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.path.replace(/:([a-zA-Z]+)/g, '{$1}');
    const params = [...r.path.matchAll(/:([a-zA-Z]+)/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    const query = [
      { name: 'namespace', in: 'query', schema: { type: 'string', default: 'default' } },
      ...(r.query ?? []).map((q) => ({
        name: q.name,
        in: 'query',
        description: q.description,
        schema: { type: 'string' },
      })),
    ];
    const content =
      r.stream === 'sse'
        ? { 'text/event-stream': { schema: { type: 'string' } } }
        : r.stream === 'text'
          ? { 'text/plain': { schema: { type: 'string' } } }
          : { 'application/json': { schema: { type: 'object' } } };
    (paths[path] ??= {})[r.method.toLowerCase()] = {
      summary: r.summary,
      'x-unum-capability': r.capability,
      parameters: [...params, ...query],
      ...(r.requestSchema
        ? { requestBody: { required: true, content: { 'application/json': { schema: r.requestSchema } } } }
        : {}),
      responses: {
        '200': { description: 'OK', content },
        default: {
          description: 'Error',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'unum API',
      version,
      description: `Errors are JSON { error: { code, message, details } }. Codes and statuses: ${Object.entries(
        STATUS_BY_CODE,
      )
        .map(([c, s]) => `${c}=${s}`)
        .join(', ')}.`,
    },
    paths,
    components: {
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: { type: 'string', enum: Object.keys(STATUS_BY_CODE) },
                message: { type: 'string' },
                details: { type: 'object' },
              },
            },
          },
        },
      },
    },
  };
}
