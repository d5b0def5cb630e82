import { WardgateError } from '../errors.js';

/*
 * Why the admin API refused a call, before any service judged it: the caller is not known
 * or not let in, or the call itself is malformed. The code is the `error` field of the
 * answer and of the admin-action log line, so an operator can search for it in both.
 */

export type AdminErrorCode =
  | 'admin-unauthenticated'
  | 'admin-token-invalid'
  | 'admin-token-insufficient-scope'
  | 'admin-certificate-untrusted'
  | 'admin-certificate-not-allowed'
  | 'admin-not-approver'
  | 'idp-unavailable'
  | 'not-found'
  | 'method-not-allowed'
  | 'unsupported-media-type'
  | 'body-too-large'
  | 'body-invalid'
  | 'query-invalid'
  | 'grants-not-configured'
  | 'devices-not-configured'
  | 'device-override-not-found'
  | 'route-unknown'
  | 'context-invalid';

const STATUS: Record<AdminErrorCode, number> = {
  'admin-unauthenticated': 401,
  'admin-token-invalid': 401,
  'admin-token-insufficient-scope': 403,
  'admin-certificate-untrusted': 401,
  'admin-certificate-not-allowed': 403,
  'admin-not-approver': 403,
  'idp-unavailable': 503,
  'not-found': 404,
  'method-not-allowed': 405,
  'unsupported-media-type': 415,
  'body-too-large': 413,
  'body-invalid': 400,
  'query-invalid': 400,
  'grants-not-configured': 404,
  'devices-not-configured': 404,
  'device-override-not-found': 404,
  'route-unknown': 400,
  'context-invalid': 400,
};

export interface AdminErrorOptions {
  /** Where in the body or query the fault is (`routes[0].id`). */
  path?: string;
  /** Headers the answer needs (WWW-Authenticate, Allow). */
  headers?: Record<string, string>;
}

export class AdminApiError extends WardgateError {
  declare readonly code: AdminErrorCode;
  readonly status: number;
  readonly path: string | undefined;
  readonly headers: Record<string, string>;
  constructor(code: AdminErrorCode, message: string, options: AdminErrorOptions = {}) {
    super(code, message);
    this.status = STATUS[code];
    this.path = options.path;
    this.headers = options.headers ?? {};
  }
}
