import { Writable } from 'node:stream';
import pino from 'pino';
import { parseConfig } from '../../config/loader.js';
import { startGateway, type Gateway } from '../../proxy/gateway.js';

/*
 * Runs a real wardgate in the test process, built from YAML through the real config
 * loader, listening on ephemeral loopback ports, with its log lines captured.
 */

export interface LogLine {
  level: number;
  msg: string;
  kind?: string;
  [field: string]: unknown;
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly port: number;
  readonly adminPort: number;
  readonly logs: LogLine[];
  /** Access-log lines only. */
  access(): LogLine[];
  /** The admin /metrics text. */
  metrics(): Promise<string>;
  close(): Promise<void>;
}

/**
 * `routesYaml` is the YAML list under `routes:` (indented two spaces); `extraYaml` adds
 * top-level keys such as trustedProxies or shutdown.
 */
export async function startTestGateway(routesYaml: string, extraYaml = ''): Promise<TestGateway> {
  const text = [
    'listen:',
    '  http: "127.0.0.1:0"',
    'admin:',
    '  listen: "127.0.0.1:0"',
    'workers: 1',
    extraYaml,
    'routes:',
    routesYaml,
  ].join('\n');
  const config = parseConfig(text, 'test-gateway.yaml');
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  const gateway = await startGateway({ config, logger, admin: true });
  return {
    gateway,
    port: gateway.ports.http!,
    adminPort: gateway.ports.admin!,
    logs,
    access: () => logs.filter((line) => line.kind === 'access'),
    metrics: async () => {
      const res = await fetch(`http://127.0.0.1:${gateway.ports.admin}/metrics`);
      return res.text();
    },
    close: () => gateway.shutdown(),
  };
}

/** The value of the first sample matching `labels` in Prometheus text, or undefined. */
export function sample(metricsText: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return samples(metricsText, name, labels)[0];
}

/** The sum of every sample matching `labels` (0 when none). */
export function total(metricsText: string, name: string, labels: Record<string, string> = {}): number {
  return samples(metricsText, name, labels).reduce((a, b) => a + b, 0);
}

function samples(metricsText: string, name: string, labels: Record<string, string>): number[] {
  const values: number[] = [];
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (match[3] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) found[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) values.push(Number(match[4]));
  }
  return values;
}
