import { WardgateError } from '../errors.js';

/*
 * Why a grant or break-glass action was refused. The code is what pages, the admin API,
 * logs and the audit trail show; the HTTP status is the admin API's and the pages' answer.
 */

export type GrantErrorCode =
  | 'grant-invalid'
  | 'grant-window-invalid'
  | 'grant-window-too-long'
  | 'grant-window-past'
  | 'grant-route-unknown'
  | 'grant-route-not-grantable'
  | 'grant-subject-unknown'
  | 'grant-not-found'
  | 'grant-not-pending'
  | 'grant-already-approved'
  | 'grant-self-approval'
  | 'grant-approver-not-allowed'
  | 'grant-requester-not-allowed'
  | 'grant-already-over'
  | 'grant-busy'
  | 'break-glass-not-allowed'
  | 'break-glass-not-configured'
  | 'break-glass-already-active'
  | 'break-glass-not-found'
  | 'break-glass-already-ended'
  | 'break-glass-already-reviewed';

const STATUS: Record<GrantErrorCode, number> = {
  'grant-invalid': 400,
  'grant-window-invalid': 400,
  'grant-window-too-long': 400,
  'grant-window-past': 400,
  'grant-route-unknown': 400,
  'grant-route-not-grantable': 400,
  'grant-subject-unknown': 400,
  'grant-not-found': 404,
  'grant-not-pending': 409,
  'grant-already-approved': 409,
  'grant-self-approval': 403,
  'grant-approver-not-allowed': 403,
  'grant-requester-not-allowed': 403,
  'grant-already-over': 409,
  'grant-busy': 503,
  'break-glass-not-allowed': 403,
  'break-glass-not-configured': 400,
  'break-glass-already-active': 409,
  'break-glass-not-found': 404,
  'break-glass-already-ended': 409,
  'break-glass-already-reviewed': 409,
};

export class GrantError extends WardgateError {
  declare readonly code: GrantErrorCode;
  readonly status: number;
  constructor(code: GrantErrorCode, message: string) {
    super(code, message);
    this.status = STATUS[code];
  }
}
