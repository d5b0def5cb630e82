#!/usr/bin/env node
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/loader.js';
import type { WardgateConfig } from '../config/schema.js';
import { runPrimary, runWorker } from './cluster.js';
import { startDemoIdentity } from './demo/identity.js';
import { startDemoUpstreams } from './demo/upstreams.js';
import { ConfigError, WardgateError } from './errors.js';
import { startGateway } from './gateway.js';
import { createLogger, type Logger } from './logger.js';
import { explainDecision, explanationJson, formatExplanation, OUTCOMES, parseContextJson } from './policy/explain.js';
import { onReloadSignal } from './reload-signal.js';
import { stopSignal } from './stop-signal.js';
import { PACKAGE_ROOT, VERSION } from './version.js';

const USAGE = `wardgate ${VERSION}: zero trust access proxy for clinical applications

Usage:
  wardgate start --config FILE      run wardgate with FILE
  wardgate check-config FILE        validate FILE; exit 0 if wardgate would start with it
  wardgate demo [--config FILE]     run the demo: sample upstreams and wardgate (config/demo.yaml)
  wardgate policy explain --config FILE --route ID --context FILE.json [--json] [--expect OUTCOME]
                                    decide the request FILE.json describes with route ID's policy, and
                                    say why; exit 0, or 3 when the outcome is not --expect's
                                    (allow, deny, login, step-up). FILE.json (all fields: proxy/policy/explain.ts):
                                    {"identity": {"sub": "dr.alice", "groups": [...], "acr": "phr", "amr": [...],
                                    "authTime": ISO} or null, "network": {"ip": "10.1.2.3", "country": "GB"},
                                    "request": {"method": "GET", "path": "/chart"}, "time": ISO, "device": {...}}
  wardgate --version | --help
`;

/** Exit codes: 1 runtime failure, 2 bad usage or bad config, 3 `policy explain --expect` not met. */
class UsageError extends WardgateError {
  constructor(message: string) {
    super('usage', message);
  }
}

function configOf(file: string | undefined): { file: string; config: WardgateConfig } {
  if (!file) throw new UsageError('missing --config FILE');
  return { file, config: loadConfig(file) };
}

/** Single process or cluster, per `workers`; resolves when wardgate has stopped. */
async function serve(file: string, config: WardgateConfig, logger: Logger, flush: () => void): Promise<void> {
  if (config.workers > 1) {
    await runPrimary(file, config, logger, ['worker', '--config']);
    return;
  }
  const gateway = await startGateway({ config, logger, admin: true });
  logger.info({ ports: gateway.ports, routes: config.routes.length }, 'wardgate started');
  const stopReloads = onReloadSignal(logger, () => gateway.reload());
  await stopSignal(logger);
  stopReloads();
  await gateway.shutdown();
  flush();
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      route: { type: 'string' },
      context: { type: 'string' },
      json: { type: 'boolean' },
      expect: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (values.help || command === undefined) {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }

  switch (command) {
    case 'check-config': {
      const file = rest[0] ?? values.config;
      const { config } = configOf(file);
      process.stdout.write(`${file}: ok (${config.routes.length} routes)\n`);
      return 0;
    }
    case 'start':
    case 'worker': {
      const { file, config } = configOf(values.config);
      const { logger, flush } = createLogger(config.log.level);
      if (command === 'worker' || cluster.isWorker) {
        await runWorker(config, logger, () => {
          flush();
          process.exit(0);
        });
        return -1;
      }
      await serve(file, config, logger, flush);
      return 0;
    }
    case 'demo': {
      const { file, config } = configOf(values.config ?? join(PACKAGE_ROOT, 'config', 'demo.yaml'));
      const { logger, flush } = createLogger(config.log.level);
      const idp = await startDemoIdentity(config, (msg, fields) => logger.info({ ...fields, kind: 'demo-idp' }, msg));
      // The demo MDM's private key lives beside the config (config/demo-mdm.key, demo only).
      const upstreams = await startDemoUpstreams(config, { mdmKeyFile: join(file, '..', 'demo-mdm.key') });
      const http = config.listen.http;
      if (http) {
        const urlOf = (r: WardgateConfig['routes'][number]): string => `http://${r.host}:${http.port}${r.paths[0] === '/' ? '/' : r.paths[0]}`;
        const hosts = config.routes.map((r) => `  ${urlOf(r)}`);
        const mdm = config.routes.find((r) => r.id === 'mdm');
        const posture = config.devices?.posture;
        const guarded = config.routes.filter((r) => (r.policy.devices ?? 'trusted') === 'trusted').map((r) => r.host);
        const devices = mdm && posture && guarded.length > 0
          ? `devices: ${guarded.join(', ')} want a managed device. Get a posture assertion at ${urlOf(mdm)}\n`
            + `  and send it in the ${posture.header} header (with curl, or a header-adding browser extension)\n`
          : '';
        process.stderr.write(`wardgate demo: open\n${hosts.join('\n')}\n`
          + `sign in at the demo IdP (${idp.issuer}) as dr.alice, nurse.bob, rad.carol, vendor.dave or admin.erin\n`
          + devices
          + `admin: http://${config.admin.listen.host}:${config.admin.listen.port}/metrics\n`);
      }
      try {
        await serve(file, config, logger, flush);
      } finally {
        await upstreams.close();
        await idp.close();
      }
      return 0;
    }
    case 'policy': {
      if (rest[0] !== 'explain') throw new UsageError(rest[0] === undefined ? 'missing policy command: policy explain' : `unknown policy command "${rest[0]}"; expected: policy explain`);
      if (!values.route) throw new UsageError('missing --route ID');
      if (!values.context) throw new UsageError('missing --context FILE.json');
      const expect = values.expect;
      if (expect !== undefined && !OUTCOMES.some((outcome) => outcome === expect)) {
        throw new UsageError(`--expect takes ${OUTCOMES.join(', ')}, got "${expect}"`);
      }
      // The normal loader: the policy explained is the one wardgate would run.
      const { file, config } = configOf(values.config);
      const route = config.routes.find((r) => r.id === values.route);
      if (!route) throw new ConfigError(file, '', `no route "${values.route}"; its routes are ${config.routes.map((r) => r.id).join(', ')}`);
      let text: string;
      try {
        text = readFileSync(values.context, 'utf8');
      } catch (err) {
        throw new ConfigError(values.context, '', `cannot read context file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
      const ctx = parseContextJson(text, { file: values.context, route, routes: config.routes, now: Date.now() });
      const explanation = explainDecision(route, config.devices !== undefined, ctx);
      process.stdout.write(values.json ? explanationJson(explanation) : formatExplanation(explanation));
      if (expect !== undefined && explanation.decision.outcome !== expect) {
        process.stderr.write(`wardgate: expected ${expect}, got ${explanation.decision.outcome}\n`);
        return 3;
      }
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof WardgateError) {
      process.stderr.write(`wardgate: ${err.message}\n`);
      if (err.code === 'usage') process.stderr.write(USAGE);
      process.exit(err.code === 'usage' || err.code === 'config-invalid' ? 2 : 1);
    }
    if (err instanceof TypeError && (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`wardgate: ${err.message}\n${USAGE}`);
      process.exit(2);
    }
    process.stderr.write(`wardgate: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
