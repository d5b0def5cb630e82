#!/usr/bin/env node
import cluster from 'node:cluster';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/loader.js';
import type { WardgateConfig } from '../config/schema.js';
import { runPrimary, runWorker } from './cluster.js';
import { startDemoIdentity } from './demo/identity.js';
import { startDemoUpstreams } from './demo/upstreams.js';
import { WardgateError } from './errors.js';
import { startGateway } from './gateway.js';
import { createLogger, type Logger } from './logger.js';
import { stopSignal } from './stop-signal.js';
import { PACKAGE_ROOT, VERSION } from './version.js';

const USAGE = `wardgate ${VERSION}: zero trust access proxy for clinical applications

Usage:
  wardgate start --config FILE      run wardgate with FILE
  wardgate check-config FILE        validate FILE; exit 0 if wardgate would start with it
  wardgate demo [--config FILE]     run the demo: sample upstreams and wardgate (config/demo.yaml)
  wardgate --version | --help
`;

/** Exit codes: 1 runtime failure, 2 bad usage or bad config. */
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
  await stopSignal(logger);
  await gateway.shutdown();
  flush();
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
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
      const upstreams = await startDemoUpstreams(config);
      const http = config.listen.http;
      if (http) {
        const hosts = config.routes.map((r) => `  http://${r.host}:${http.port}${r.paths[0] === '/' ? '/' : r.paths[0]}`);
        process.stderr.write(`wardgate demo: open\n${hosts.join('\n')}\n`
          + `sign in at the demo IdP (${idp.issuer}) as dr.alice, nurse.bob, rad.carol, vendor.dave or admin.erin\n`
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
