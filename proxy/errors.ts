/**
 * Errors carry a stable `code`: the same string appears in deny pages, audit events,
 * logs and metric labels, so operators can search for it across all of them.
 */
export class WardgateError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A config file that cannot be used. `where` is `file:line:col` when known. */
export class ConfigError extends WardgateError {
  readonly file: string;
  readonly path: string;
  constructor(file: string, path: string, message: string, where?: string) {
    super('config-invalid', `${where ?? file}: ${path ? `${path}: ` : ''}${message}`);
    this.file = file;
    this.path = path;
  }
}

/** A listener or upstream that could not be set up at start. */
export class StartupError extends WardgateError {
  constructor(message: string, options?: ErrorOptions) {
    super('startup-failed', message, options);
  }
}
