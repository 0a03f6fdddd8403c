/**
 * The deploy artefacts (deploy/compose.yaml, deploy/k8s/*.yaml, deploy/Dockerfile) checked without a
 * Docker engine or a cluster: their structure (roles, replicas, probes, dependencies, the compiled
 * entry point) and, above all, that every CAIRN_* variable they set is a configuration key that
 * `loadConfig` really applies. The loader silently ignores unknown CAIRN_* names (other variables may
 * share the prefix), so a misspelt key in a manifest would otherwise deploy with its default.
 * Also covers the compiled build itself (training with worker threads in a tree without tsx) and
 * bin/cairn.js's CAIRN_COMPILED switch to the build output.
 */
/* eslint-disable @typescript-eslint/no-unsafe-return -- helpers return parts of untyped parsed YAML */
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigSchema } from '../../src/config/schema.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DEPLOY = join(ROOT, 'deploy');
/** What production runs: the build output of src/cli/main.ts. */
const COMPILED_ENTRY = ['node', 'dist/src/cli/main.js'];

/** A parsed YAML document: untyped on purpose, the checks below assert the shapes they rely on. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

// ------------------------------------------------------------------------------------------------
// CAIRN_* names against the configuration schema
// ------------------------------------------------------------------------------------------------

interface Leaf {
  path: string[];
  schema: TSchema;
}

/** Every settable leaf of the schema under the name the documented rule gives it (`a.bC` → `CAIRN_A_B_C`). */
function configLeaves(): Map<string, Leaf> {
  const out = new Map<string, Leaf>();
  const walk = (schema: TSchema, path: string[]): void => {
    const props = (schema as { properties?: Record<string, TSchema> }).properties;
    if (!props) {
      const name = ['CAIRN', ...path.map((k) => k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase())].join('_');
      out.set(name, { path, schema });
      return;
    }
    for (const [key, sub] of Object.entries(props)) walk(sub, [...path, key]);
  };
  walk(ConfigSchema, []);
  return out;
}
const LEAVES = configLeaves();
const DEFAULTS = loadConfig({ env: {} });

function at(config: unknown, path: string[]): unknown {
  return path.reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], config);
}

/** How a value is written in an environment variable (the loader parses objects and arrays as JSON). */
function envText(value: unknown): string {
  // JSON spells numbers and booleans the way the loader parses them back, objects as it expects them.
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** A valid value of the leaf other than its default, to prove that setting the variable changes it. */
function probeValue(leaf: Leaf, manifestValue: string): unknown {
  const def = at(DEFAULTS, leaf.path);
  const s = leaf.schema as { type?: string; anyOf?: { const?: unknown }[] };
  const candidates: unknown[] = [];
  if (s.type === 'integer' || s.type === 'number') {
    const n = Number(def);
    candidates.push(Number(manifestValue), n + 1, n - 1, n / 2, n * 2);
  } else if (s.type === 'boolean') candidates.push(!def);
  else if (s.type === 'string') candidates.push(manifestValue, `${String(def)}x`, 'x', 'X');
  else if (s.anyOf) candidates.push(...s.anyOf.map((l) => l.const));
  else {
    try {
      candidates.push(JSON.parse(manifestValue));
    } catch {
      // not JSON: no candidate from the manifest
    }
  }
  return candidates.find((c) => Value.Check(leaf.schema, c) && JSON.stringify(c) !== JSON.stringify(def));
}

/**
 * Why `NAME=value` is not a working configuration setting (empty when it is): the name must be a
 * schema leaf, the value must load, and setting the variable must change that leaf of the result.
 */
function envProblems(name: string, value: string): string[] {
  // Not a key but the loader's own: the JSON config file to read (must exist where the process runs).
  if (name === 'CAIRN_CONFIG') return value === '' ? ['CAIRN_CONFIG is empty'] : [];
  const leaf = LEAVES.get(name);
  if (!leaf) return [`${name} is not a configuration key (known: ${[...LEAVES.keys()].join(', ')})`];
  const key = leaf.path.join('.');
  let loaded: unknown;
  try {
    loaded = loadConfig({ env: { [name]: value } });
  } catch (err) {
    return [`${name}=${value} does not load: ${(err as Error).message}`];
  }
  const problems: string[] = [];
  const expected = Value.Convert(leaf.schema, value);
  const got = at(loaded, leaf.path);
  if (JSON.stringify(got) !== JSON.stringify(expected) && envText(got) !== value) {
    problems.push(`${name}=${value} left ${key} at ${JSON.stringify(got)}`);
  }
  const probe = probeValue(leaf, value);
  if (probe === undefined) return [...problems, `${name}: no value other than the default to probe ${key}`];
  const probed = at(loadConfig({ env: { [name]: envText(probe) } }), leaf.path);
  if (
    JSON.stringify(probed) !== JSON.stringify(probe) ||
    JSON.stringify(probed) === JSON.stringify(at(DEFAULTS, leaf.path))
  ) {
    problems.push(`${name}=${envText(probe)} does not change ${key} (got ${JSON.stringify(probed)})`);
  }
  return problems;
}

/** Problems of every CAIRN_* variable in `env` (other names are not Cairn's business). */
function cairnEnvProblems(env: Record<string, string>): string[] {
  return Object.entries(env)
    .filter(([name]) => name.startsWith('CAIRN_'))
    .flatMap(([name, value]) => envProblems(name, value));
}

describe('CAIRN_* check itself', () => {
  it('accepts real keys, whether or not the value differs from the default', () => {
    expect(envProblems('CAIRN_REDIS_URL', 'redis://redis:6379/0')).toEqual([]);
    expect(envProblems('CAIRN_SERVER_PORT', '8080')).toEqual([]); // the default: probed with another value
    expect(envProblems('CAIRN_SERVER_MAX_BATCH_EVENTS', '500')).toEqual([]);
    expect(envProblems('CAIRN_LOGGING_LEVEL', 'info')).toEqual([]);
    expect(envProblems('CAIRN_SERVING_EXCLUDE_SEEN', 'false')).toEqual([]);
  });

  it('rejects a misspelt key that loadConfig would silently ignore', () => {
    // The loader does not complain: this is why manifests need the check.
    expect(loadConfig({ env: { CAIRN_REDIS_URLL: 'redis://redis:6379/0' } }).redis.url).toBe('');
    const problems = envProblems('CAIRN_REDIS_URLL', 'redis://redis:6379/0');
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/CAIRN_REDIS_URLL is not a configuration key/);
    expect(envProblems('CAIRN_SERVER', '{}')).not.toEqual([]); // an object, not a leaf
  });

  it('rejects a value the key does not accept', () => {
    expect(envProblems('CAIRN_SERVER_PORT', 'eighty')).not.toEqual([]);
    expect(envProblems('CAIRN_LOGGING_LEVEL', 'verbose')).not.toEqual([]);
  });

  it('accepts CAIRN_CONFIG, the config file the loader reads, and nothing else outside the schema', () => {
    expect(envProblems('CAIRN_CONFIG', '/etc/cairn/config.json')).toEqual([]);
    expect(envProblems('CAIRN_COMPILED', '1')).not.toEqual([]); // bin/cairn.js's switch: no use in a container
  });

  it('ignores variables outside the CAIRN_ prefix', () => {
    expect(cairnEnvProblems({ NODE_OPTIONS: '--max-old-space-size=2048' })).toEqual([]);
  });
});

// ------------------------------------------------------------------------------------------------
// compose.yaml
// ------------------------------------------------------------------------------------------------

/** Compose's variable interpolation with the defaults a bare `docker compose up` would use. */
function interpolate(text: string, unset: string[]): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g,
    (m, name: string, op?: string, arg?: string) => {
      if (m === '$$') return '$';
      if (op === '-' || op === ':-') return arg ?? '';
      unset.push(name);
      return '';
    },
  );
}

function composeEnv(service: Json): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((e: string) => {
        const i = e.indexOf('=');
        return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v as string | number | boolean)]),
  );
}

function commandOf(service: Json): string[] {
  const c = service.command;
  return Array.isArray(c) ? c.map(String) : typeof c === 'string' ? c.split(/\s+/) : [];
}

function roleOf(command: string[]): string | undefined {
  const i = command.indexOf('--role');
  return i >= 0 ? command[i + 1] : undefined;
}

/** Every CAIRN_* problem of a parsed compose document, as `service: problem`. */
function composeEnvProblems(compose: Json): string[] {
  return Object.entries(compose.services as Record<string, Json>).flatMap(([name, svc]) => {
    const unset: string[] = [];
    const env = Object.fromEntries(
      Object.entries(composeEnv(svc)).map(([k, v]) => [k, interpolate(v, unset)]),
    );
    return [
      ...unset.map((u) => `${name}: \${${u}} has no default`),
      ...cairnEnvProblems(env).map((p) => `${name}: ${p}`),
    ];
  });
}

describe('deploy/compose.yaml', () => {
  const text = readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8');
  const compose: Json = parse(text, { merge: true });
  const services = compose.services as Record<string, Json>;
  const cairnServices = Object.entries(services).filter(([, s]) => roleOf(commandOf(s)) !== undefined);

  it('has the backing services, API replicas and a worker', () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['postgres', 'redis', 'nats']));
    expect(services.postgres.image).toMatch(/^postgres:15\b/);
    expect(services.redis.image).toMatch(/^redis:7\b/);
    expect(services.nats.image).toMatch(/^nats:2\b/);
    const replicas = (role: string) =>
      cairnServices
        .filter(([, s]) => roleOf(commandOf(s)) === role)
        .reduce((n, [, s]) => n + Number(s.deploy?.replicas ?? 1), 0);
    expect(replicas('api')).toBeGreaterThanOrEqual(2);
    expect(replicas('worker')).toBeGreaterThanOrEqual(1);
  });

  it('runs the compiled entry point, checked by /health/live, after healthy backends', () => {
    expect(cairnServices.length).toBeGreaterThan(0);
    for (const [name, svc] of cairnServices) {
      const command = commandOf(svc);
      expect(command.slice(0, 3), name).toEqual([...COMPILED_ENTRY, 'serve']);
      const env = composeEnv(svc);
      expect(env.CAIRN_SERVER_HOST, `${name} must listen beyond loopback`).toBe('0.0.0.0');
      const port = env.CAIRN_SERVER_PORT ?? String(DEFAULTS.server.port);
      expect(svc.healthcheck?.test?.join(' '), name).toContain(`127.0.0.1:${port}/health/live`);
      for (const dep of ['postgres', 'redis', 'nats']) {
        expect(svc.depends_on?.[dep]?.condition, `${name} → ${dep}`).toBe('service_healthy');
      }
    }
    for (const dep of ['postgres', 'redis', 'nats'])
      expect(services[dep].healthcheck?.test, dep).toBeTruthy();
  });

  it('points the backend URLs at the compose services', () => {
    for (const [name, svc] of cairnServices) {
      const env = composeEnv(svc);
      const host = (url: string | undefined) => new URL(interpolate(url ?? '', [])).hostname;
      expect(env.CAIRN_STORE_URL, name).toMatch(/^postgres:\/\//);
      expect(env.CAIRN_REDIS_URL, name).toMatch(/^redis:\/\//);
      expect(env.CAIRN_NATS_URL, name).toMatch(/^nats:\/\//);
      expect(services[host(env.CAIRN_STORE_URL)]?.image, name).toMatch(/^postgres:/);
      expect(services[host(env.CAIRN_REDIS_URL)]?.image, name).toMatch(/^redis:/);
      expect(services[host(env.CAIRN_NATS_URL)]?.image, name).toMatch(/^nats:/);
    }
  });

  it('runs JetStream on a file store volume, fsyncing every write', () => {
    const nats = services.nats;
    const command = commandOf(nats);
    expect(command).toContain('-js');
    const configFlag = command.findIndex((a) => a === '-c' || a === '--config');
    expect(configFlag).toBeGreaterThanOrEqual(0);
    const configPath = command[configFlag + 1];
    const mounts = (nats.volumes as string[]).map((v) => v.split(':'));
    const configMount = mounts.find(([, target]) => target === configPath);
    expect(configMount, 'config file mounted').toBeTruthy();
    const conf = readFileSync(resolve(DEPLOY, configMount![0]), 'utf8');
    const jetstream = /jetstream\s*\{([^}]*)\}/.exec(conf)?.[1] ?? '';
    expect(jetstream).toMatch(/^\s*sync_interval\s*:\s*always\s*$/m);
    const storeDir = /^\s*store_dir\s*:\s*"?([^"\s]+)"?\s*$/m.exec(jetstream)?.[1];
    expect(storeDir).toBeTruthy();
    const storeMount = mounts.find(([, target]) => target === storeDir);
    expect(storeMount, 'store_dir on a volume').toBeTruthy();
    expect(Object.keys(compose.volumes ?? {})).toContain(storeMount![0]);
  });

  it('sets only CAIRN_* variables that are configuration keys', () => {
    expect(composeEnvProblems(compose)).toEqual([]);
  });

  it('would catch a misspelt CAIRN_* variable', () => {
    const broken: Json = parse(text, { merge: true });
    const env = broken.services.api.environment;
    env.CAIRN_REDIS_URLL = env.CAIRN_REDIS_URL;
    delete env.CAIRN_REDIS_URL;
    const problems = composeEnvProblems(broken);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^api: CAIRN_REDIS_URLL is not a configuration key/);
  });
});

// ------------------------------------------------------------------------------------------------
// k8s/
// ------------------------------------------------------------------------------------------------

interface Manifest {
  file: string;
  doc: Json;
}

function loadManifests(dir: string): Manifest[] {
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((d) => {
        if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
        return { file, doc: d.toJS() };
      }),
    )
    .filter((m) => m.doc !== null);
}

/** The environment a container gets: its ConfigMap and Secret references resolved, then `env`. */
function containerEnv(
  container: Json,
  manifests: Manifest[],
): { env: Record<string, unknown>; problems: string[] } {
  const env: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const from of container.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    const kind = from.configMapRef ? 'ConfigMap' : 'Secret';
    const target = manifests.find((m) => m.doc.kind === kind && m.doc.metadata?.name === ref?.name)?.doc;
    if (!target) {
      problems.push(`${container.name}: ${kind} ${ref?.name} not found`);
      continue;
    }
    Object.assign(env, target.data ?? {}, target.stringData ?? {});
  }
  for (const e of container.env ?? []) env[e.name] = e.value;
  return { env, problems };
}

describe('deploy/k8s', () => {
  const dir = join(DEPLOY, 'k8s');
  const manifests = loadManifests(dir);
  const docs = manifests.map((m) => m.doc);
  const deployment = (name: string) => docs.find((d) => d.kind === 'Deployment' && d.metadata?.name === name);
  const api = deployment('cairn-api');
  const worker = deployment('cairn-worker');

  it('lists every manifest in kustomization.yaml', () => {
    const kustomization = docs.find((d) => d.kind === 'Kustomization');
    const files = new Set(manifests.filter((m) => m.doc.kind !== 'Kustomization').map((m) => m.file));
    expect(new Set(kustomization.resources)).toEqual(files);
    for (const d of docs) expect(d.apiVersion, `${d.kind} has an apiVersion`).toBeTruthy();
  });

  it('has an API Deployment of at least two replicas with its Service, and a worker Deployment', () => {
    expect(api).toBeTruthy();
    expect(worker).toBeTruthy();
    expect(api.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(worker.spec.replicas).toBeGreaterThanOrEqual(1);
    expect(roleOf(api.spec.template.spec.containers[0].command)).toBe('api');
    expect(roleOf(worker.spec.template.spec.containers[0].command)).toBe('worker');

    const service = docs.find((d) => d.kind === 'Service' && d.metadata?.name === 'cairn-api');
    expect(service).toBeTruthy();
    expect(api.spec.template.metadata.labels).toMatchObject(service.spec.selector);
    expect(worker.spec.template.metadata.labels).not.toMatchObject(service.spec.selector);
    const portNames = api.spec.template.spec.containers[0].ports.map((p: Json) => p.name);
    for (const p of service.spec.ports) expect(portNames).toContain(p.targetPort);
  });

  for (const name of ['cairn-api', 'cairn-worker']) {
    it(`${name}: compiled entry, probes on /health/live and /health/ready, resources, non-root`, () => {
      const d = deployment(name);
      expect(d.metadata.labels).toBeTruthy();
      expect(d.spec.template.metadata.labels).toMatchObject(d.spec.selector.matchLabels);
      const pod = d.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      for (const c of pod.containers) {
        expect(c.command.slice(0, 3)).toEqual([...COMPILED_ENTRY, 'serve']);
        expect(c.livenessProbe.httpGet.path).toBe('/health/live');
        expect(c.readinessProbe.httpGet.path).toBe('/health/ready');
        if (c.startupProbe) expect(c.startupProbe.httpGet.path).toBe('/health/live');
        // Probes must hit the port the process listens on.
        const { env } = containerEnv(c, manifests);
        const listen = Number(env.CAIRN_SERVER_PORT ?? DEFAULTS.server.port);
        expect(env.CAIRN_SERVER_HOST).toBe('0.0.0.0');
        for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe].filter(Boolean)) {
          const port = probe.httpGet.port;
          const number =
            typeof port === 'number' ? port : c.ports.find((p: Json) => p.name === port)?.containerPort;
          expect(number, `${c.name} probe port`).toBe(listen);
        }
        expect(c.resources.requests.cpu).toBeTruthy();
        expect(c.resources.requests.memory).toBeTruthy();
        expect(c.resources.limits.memory).toBeTruthy();
        // With a read-only root filesystem, /tmp and the data directory need volumes.
        if (c.securityContext?.readOnlyRootFilesystem) {
          const dataDir = env.CAIRN_DATA_DIR ?? dockerEnv().CAIRN_DATA_DIR;
          expect(c.volumeMounts.map((m: Json) => m.mountPath)).toEqual(
            expect.arrayContaining(['/tmp', dataDir]),
          );
        }
      }
    });
  }

  it('sets only string-valued CAIRN_* variables that are configuration keys', () => {
    const problems: string[] = [];
    for (const d of docs.filter((x) => x.kind === 'Deployment')) {
      for (const c of d.spec.template.spec.containers) {
        const { env, problems: refs } = containerEnv(c, manifests);
        problems.push(...refs);
        for (const [k, v] of Object.entries(env)) {
          if (typeof v !== 'string') problems.push(`${d.metadata.name}: ${k} must be a string in Kubernetes`);
        }
        problems.push(
          ...cairnEnvProblems(env as Record<string, string>).map((p) => `${d.metadata.name}/${c.name}: ${p}`),
        );
      }
    }
    // ConfigMaps and Secrets not referenced by a container still must not carry dead keys.
    for (const d of docs.filter((x) => x.kind === 'ConfigMap' || x.kind === 'Secret')) {
      problems.push(
        ...cairnEnvProblems({ ...d.data, ...d.stringData }).map((p) => `${d.metadata.name}: ${p}`),
      );
    }
    expect(problems).toEqual([]);
  });

  it('would catch a misspelt CAIRN_* variable in the ConfigMap', () => {
    const broken = loadManifests(dir);
    const cm = broken.find((m) => m.doc.kind === 'ConfigMap')!.doc;
    cm.data.CAIRN_REDIS_URLL = cm.data.CAIRN_REDIS_URL;
    delete cm.data.CAIRN_REDIS_URL;
    const container = broken.find((m) => m.doc.metadata?.name === 'cairn-api')!.doc.spec.template.spec
      .containers[0];
    const problems = cairnEnvProblems(containerEnv(container, broken).env as Record<string, string>);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^CAIRN_REDIS_URLL is not a configuration key/);
  });
});

// ------------------------------------------------------------------------------------------------
// Dockerfile and the build that produces its entry point
// ------------------------------------------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions, with continuation lines joined and comments dropped. */
function dockerInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (current === '' && line === '')) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    const m = /^(\S+)\s+([\s\S]*)$/.exec(current.trim());
    if (m) out.push({ op: m[1].toUpperCase(), args: m[2] });
    current = '';
  }
  return out;
}

/** Where `npm run build` writes the JavaScript of `source`, according to tsconfig.build.json. */
function emittedPath(source: string): { path: string; options: ts.CompilerOptions; files: string[] } {
  const configPath = join(ROOT, 'tsconfig.build.json');
  const read = ts.readConfigFile(configPath, (p) => ts.sys.readFile(p));
  if (read.error) throw new Error(ts.flattenDiagnosticMessageText(read.error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT, undefined, configPath);
  expect(parsed.errors.map((e) => ts.flattenDiagnosticMessageText(e.messageText, '\n'))).toEqual([]);
  const { outDir, rootDir } = parsed.options;
  const rel = relative(rootDir!, join(ROOT, source)).replace(/\.ts$/, '.js');
  return {
    path: relative(ROOT, join(outDir!, rel)).split('\\').join('/'),
    options: parsed.options,
    files: parsed.fileNames.map((f) => relative(ROOT, f)),
  };
}

function readDockerfile(): Instruction[] {
  return dockerInstructions(readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8'));
}

/** The variables the image sets (`ENV K=V …`). */
function dockerEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of readDockerfile().filter((x) => x.op === 'ENV')) {
    for (const m of i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1]] = m[2].replace(/^"|"$/g, '');
  }
  return env;
}

describe('deploy/Dockerfile', () => {
  const instructions = readDockerfile();
  const froms = instructions.filter((i) => i.op === 'FROM');
  const lastFrom = instructions.lastIndexOf(froms[froms.length - 1]);
  const runtime = instructions.slice(lastFrom);
  const args = Object.fromEntries(
    instructions
      .filter((i) => i.op === 'ARG' && i.args.includes('='))
      .map((i) => i.args.split('=', 2) as [string, string]),
  );
  const expand = (s: string) => s.replace(/\$\{?(\w+)\}?/g, (_, n: string) => args[n] ?? '');

  it('builds in one stage and runs on node:20-bookworm-slim in another', () => {
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(expand(froms[froms.length - 1].args.split(/\s+/)[0])).toBe('node:20-bookworm-slim');
    const runs = instructions.filter((i) => i.op === 'RUN').map((i) => i.args);
    expect(runs.some((r) => r.includes('npm ci'))).toBe(true);
    expect(runs.some((r) => r.includes('npm run build'))).toBe(true);
    expect(runs.some((r) => /npm prune --omit=dev/.test(r))).toBe(true);
  });

  it('runs the compiled entry point as a non-root user, health-checked on /health/live', () => {
    const cmd = runtime.filter((i) => i.op === 'CMD').pop();
    expect(JSON.parse(cmd!.args)).toEqual([...COMPILED_ENTRY, 'serve', '--role', 'api']);
    expect(instructions.some((i) => i.op === 'ENTRYPOINT')).toBe(false);
    const user = runtime
      .filter((i) => i.op === 'USER')
      .pop()
      ?.args.split(':')[0];
    expect(user).toBeTruthy();
    expect(['root', '0']).not.toContain(user);
    const health = runtime.find((i) => i.op === 'HEALTHCHECK');
    expect(health?.args).toContain('/health/live');
  });

  it('runs what `npm run build` produces from src/cli/main.ts', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.scripts.build).toContain('tsconfig.build.json');
    const { path, options, files } = emittedPath('src/cli/main.ts');
    expect(path).toBe(COMPILED_ENTRY[1]);
    expect(options.noEmit).toBe(false);
    expect(options.rewriteRelativeImportExtensions).toBe(true);
    expect(files).toContain('src/cli/main.ts');
    expect(files.filter((f) => f.endsWith('.test.ts') || !f.startsWith('src/'))).toEqual([]);
    const [major, minor] = ts.version.split('.').map(Number);
    expect(major > 5 || (major === 5 && minor >= 7), `TypeScript ${ts.version} ≥ 5.7`).toBe(true);
  });

  it('copies only what the build context lets through', () => {
    const ignore = readFileSync(join(DEPLOY, 'Dockerfile.dockerignore'), 'utf8').split('\n');
    const allowed = new Set(
      ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/\*\*$/, '')),
    );
    const sources = instructions
      .filter((i) => i.op === 'COPY' && !i.args.includes('--from'))
      .flatMap((i) =>
        i.args
          .split(/\s+/)
          .filter((a) => !a.startsWith('--'))
          .slice(0, -1),
      );
    expect(sources.length).toBeGreaterThan(0);
    for (const s of sources) {
      expect(allowed, s).toContain(s);
      expect(existsSync(join(ROOT, s)), s).toBe(true);
    }
  });

  it('sets only CAIRN_* variables that are configuration keys', () => {
    const env = dockerEnv();
    expect(env.CAIRN_SERVER_HOST).toBe('0.0.0.0');
    expect(cairnEnvProblems(env)).toEqual([]);
  });
});

// ------------------------------------------------------------------------------------------------
// bin/cairn.js with CAIRN_COMPILED=1
// ------------------------------------------------------------------------------------------------

describe('bin/cairn.js CAIRN_COMPILED=1', () => {
  // A copy of bin/cairn.js in a scratch tree, so that dist/ is present or absent at will.
  let tree = '';
  beforeAll(() => {
    tree = mkdtempSync(join(tmpdir(), 'cairn-bin-'));
    mkdirSync(join(tree, 'bin'));
    cpSync(join(ROOT, 'bin/cairn.js'), join(tree, 'bin/cairn.js'));
    writeFileSync(join(tree, 'package.json'), '{ "type": "module" }\n');
  });
  afterAll(() => rmSync(tree, { recursive: true, force: true }));

  const run = (compiled: boolean) => {
    const env = { ...process.env };
    delete env.CAIRN_COMPILED;
    if (compiled) env.CAIRN_COMPILED = '1';
    return spawnSync(process.execPath, [join(tree, 'bin/cairn.js'), 'serve', '--role', 'api'], {
      env,
      encoding: 'utf8',
      timeout: 30_000,
    });
  };

  it('needs tsx without it (so the scratch tree really has no TypeScript loader)', () => {
    const r = run(false);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Cannot find (package|module) 'tsx'/);
  });

  it('fails clearly when dist/ has not been built', () => {
    const r = run(true);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/dist\/src\/cli\/main\.js does not exist: run `npm run build`/);
  });

  it('runs dist/src/cli/main.js with the same arguments, never importing tsx', () => {
    // tsx cannot be resolved from the scratch tree (previous test), so importing it would fail here.
    mkdirSync(join(tree, 'dist/src/cli'), { recursive: true });
    writeFileSync(
      join(tree, 'dist/src/cli/main.js'),
      'process.stdout.write(JSON.stringify(process.argv.slice(2)));\n',
    );
    const r = run(true);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(['serve', '--role', 'api']);
  });
});

// ------------------------------------------------------------------------------------------------
// The compiled build runs without tsx, worker threads included
// ------------------------------------------------------------------------------------------------

describe('compiled build', () => {
  // The runtime image's layout: package.json, dist/ and node_modules — here without tsx, so that any
  // attempt to load TypeScript (e.g. a worker bootstrap pointing at a .ts file) fails the run.
  let tree = '';
  beforeAll(() => {
    tree = mkdtempSync(join(tmpdir(), 'cairn-compiled-'));
  });
  afterAll(() => rmSync(tree, { recursive: true, force: true }));

  it('trains with worker threads that load the compiled worker modules', { timeout: 180_000 }, () => {
    // The real build configuration; --noCheck because type errors are `npm run typecheck`'s to report.
    const tsc = spawnSync(
      process.execPath,
      [
        join(ROOT, 'node_modules/typescript/bin/tsc'),
        '-p',
        join(ROOT, 'tsconfig.build.json'),
        '--outDir',
        join(tree, 'dist'),
        '--noCheck',
      ],
      { encoding: 'utf8' },
    );
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
    // The rest of `npm run build`: the committed WebAssembly kernels beside their compiled loader.
    const copy = spawnSync(process.execPath, [join(ROOT, 'bin/copy-kernels.js'), join(tree, 'dist')], {
      encoding: 'utf8',
    });
    expect(copy.stderr).toBe('');
    expect(copy.status).toBe(0);
    writeFileSync(join(tree, 'package.json'), readFileSync(join(ROOT, 'package.json')));
    mkdirSync(join(tree, 'node_modules'));
    for (const name of readdirSync(join(ROOT, 'node_modules'))) {
      if (name !== 'tsx' && name !== '.bin')
        symlinkSync(join(ROOT, 'node_modules', name), join(tree, 'node_modules', name));
    }
    // Preloaded in every thread (workers inherit execArgv): reports each Worker and the module it loads.
    writeFileSync(
      join(tree, 'trace.cjs'),
      [
        "const wt = require('node:worker_threads');",
        'const Base = wt.Worker;',
        'wt.Worker = class extends Base {',
        '  constructor(code, opts) {',
        "    process.stderr.write('spawn ' + String(code) + '\\n');",
        '    super(code, opts);',
        '  }',
        '};',
        "require('node:module').syncBuiltinESMExports();",
      ].join('\n'),
    );
    const cairn = (args: string[], threads = '1') => {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        CAIRN_TRAINING_THREADS: threads,
        CAIRN_LOGGING_LEVEL: 'warn',
      };
      delete env.CAIRN_CONFIG;
      const r = spawnSync(process.execPath, ['-r', './trace.cjs', 'dist/src/cli/main.js', ...args], {
        cwd: tree,
        env,
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(r.status, `cairn ${args.join(' ')}\n${r.stderr}`).toBe(0);
      return r;
    };
    cairn(['demo-data', '--users', '100', '--items', '50', '--events', '2000', '--out', 'demo']);
    cairn(['import', 'demo', '--data', 'data']);
    const small = ['--param', 'als.factors=8', '--param', 'als.iterations=2'];
    const train = cairn(['train', '--data', 'data', '--algorithm', 'als', ...small, '--json'], '2');
    expect(JSON.parse(train.stdout)).toMatchObject({ algorithm: 'als' });
    const spawned = train.stderr.split('\n').filter((l) => l.startsWith('spawn '));
    // The fit runs in its own thread, which runs ALS's pool of two threads.
    expect(spawned.filter((l) => l.includes('/dist/src/training/fit-worker.js')).length).toBe(1);
    expect(spawned.filter((l) => l.includes('/dist/src/algorithms/worker.js')).length).toBeGreaterThanOrEqual(
      2,
    );
    expect(spawned.filter((l) => /\.ts\b|tsx/.test(l))).toEqual([]);
  });
});
