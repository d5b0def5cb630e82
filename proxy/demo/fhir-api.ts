import type { IncomingMessage, ServerResponse } from 'node:http';
import { isReadMethod, requestTarget, sendJson } from './respond.js';

/*
 * Stand-in for a FHIR R4 server, read-only, with a few fictional patients. Enough of the
 * shape (resource reads, patient-scoped searches, searchset Bundles, OperationOutcomes)
 * for SMART-style clients and for policies that look at the FHIR resource type: besides
 * vital signs and prescriptions, demo-1001 has a psychiatric consultation note
 * (DocumentReference) and a PHQ-9 depression screening (QuestionnaireResponse), the
 * records the demo's cardiology app is refused.
 */

const FHIR_JSON = 'application/fhir+json';
const BASE_PATH = '/fhir';

type Resource = { resourceType: string; id: string } & Record<string, unknown>;

const patient = (id: string, family: string, given: string, gender: string, birthDate: string): Resource => ({
  resourceType: 'Patient',
  id,
  meta: { tag: [{ system: 'urn:wardgate:demo', code: 'fictional' }] },
  identifier: [{ system: 'urn:wardgate:demo:mrn', value: `DEMO-${id}` }],
  name: [{ use: 'official', family, given: [given] }],
  gender,
  birthDate,
});

const observation = (id: string, patientId: string, loinc: string, display: string, value: number, unit: string, when: string): Resource => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
  code: { coding: [{ system: 'http://loinc.org', code: loinc, display }], text: display },
  subject: { reference: `Patient/${patientId}` },
  effectiveDateTime: when,
  valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit },
});

const medicationRequest = (id: string, patientId: string, medication: string, dosage: string, authoredOn: string): Resource => ({
  resourceType: 'MedicationRequest',
  id,
  status: 'active',
  intent: 'order',
  medicationCodeableConcept: { text: medication },
  subject: { reference: `Patient/${patientId}` },
  authoredOn,
  dosageInstruction: [{ text: dosage }],
});

// Sensitivity labels a FHIR server puts on mental health records (HL7 v3 codes).
const PSYCHIATRIC_SECURITY = [
  { system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R', display: 'restricted' },
  { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY', display: 'psychiatry disorder information sensitivity' },
];

/** A psychiatric consultation note: the record the cardiology app must never read. */
const psychiatricNote = (id: string, patientId: string, date: string, text: string): Resource => ({
  resourceType: 'DocumentReference',
  id,
  meta: { security: PSYCHIATRIC_SECURITY },
  status: 'current',
  docStatus: 'final',
  type: { coding: [{ system: 'http://loinc.org', code: '11488-4', display: 'Consult note' }], text: 'Psychiatry consultation note' },
  category: [{ coding: [{ system: 'http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category', code: 'clinical-note', display: 'Clinical Note' }] }],
  subject: { reference: `Patient/${patientId}` },
  date,
  author: [{ display: 'Dr Demo Psychiatrist (fictional)' }],
  securityLabel: PSYCHIATRIC_SECURITY,
  content: [{
    attachment: {
      contentType: 'text/plain; charset=utf-8',
      language: 'en-GB',
      data: Buffer.from(text, 'utf8').toString('base64'),
      title: 'Psychiatry consultation (fictional)',
      creation: date,
    },
  }],
  context: {
    practiceSetting: { coding: [{ system: 'http://snomed.info/sct', code: '394587001', display: 'Psychiatry' }] },
  },
});

// PHQ-9 (LOINC 44249-1): nine questions, each answered 0-3, and the total score.
const PHQ9_QUESTIONS: ReadonlyArray<readonly [string, string]> = [
  ['44250-9', 'Little interest or pleasure in doing things'],
  ['44255-8', 'Feeling down, depressed, or hopeless'],
  ['44259-0', 'Trouble falling or staying asleep, or sleeping too much'],
  ['44254-1', 'Feeling tired or having little energy'],
  ['44251-7', 'Poor appetite or overeating'],
  ['44258-2', 'Feeling bad about yourself - or that you are a failure or have let yourself or your family down'],
  ['44252-5', 'Trouble concentrating on things, such as reading the newspaper or watching television'],
  ['44253-3', 'Moving or speaking so slowly that other people could have noticed; or the opposite - being so fidgety or restless that you have been moving around a lot more than usual'],
  ['44260-8', 'Thoughts that you would be better off dead, or of hurting yourself in some way'],
];
const PHQ9_ANSWERS: ReadonlyArray<readonly [string, string]> = [
  ['LA6568-5', 'Not at all'],
  ['LA6569-3', 'Several days'],
  ['LA6570-1', 'More than half the days'],
  ['LA6571-9', 'Nearly every day'],
];

/** A completed PHQ-9 depression screening: `scores` holds the nine answers, 0 to 3. */
const phq9Response = (id: string, patientId: string, authored: string, scores: readonly number[]): Resource => ({
  resourceType: 'QuestionnaireResponse',
  id,
  meta: { security: PSYCHIATRIC_SECURITY },
  questionnaire: 'http://loinc.org/q/44249-1',
  status: 'completed',
  subject: { reference: `Patient/${patientId}` },
  authored,
  item: [
    ...PHQ9_QUESTIONS.map(([linkId, text], i) => {
      const [code, display] = PHQ9_ANSWERS[scores[i]!]!;
      return { linkId, text, answer: [{ valueCoding: { system: 'http://loinc.org', code, display } }] };
    }),
    {
      linkId: '44261-6',
      text: 'Patient Health Questionnaire 9 item (PHQ-9) total score',
      answer: [{ valueInteger: scores.reduce((sum, score) => sum + score, 0) }],
    },
  ],
});

// Clearly fictional people: no resemblance to real patients is possible or intended.
const RESOURCES: readonly Resource[] = [
  patient('demo-1001', 'Testpatient', 'Alice', 'female', '1961-04-12'),
  patient('demo-1002', 'Sampleperson', 'Bob', 'male', '1978-09-30'),
  patient('demo-1003', 'Fictional', 'Casey', 'other', '2004-01-05'),
  observation('obs-2001', 'demo-1001', '8867-4', 'Heart rate', 72, '/min', '2024-05-01T08:30:00Z'),
  observation('obs-2002', 'demo-1001', '8310-5', 'Body temperature', 37.1, 'Cel', '2024-05-01T08:30:00Z'),
  observation('obs-2003', 'demo-1002', '8867-4', 'Heart rate', 88, '/min', '2024-05-02T14:10:00Z'),
  observation('obs-2004', 'demo-1003', '29463-7', 'Body weight', 61.5, 'kg', '2024-05-03T10:00:00Z'),
  medicationRequest('med-3001', 'demo-1001', 'Demo-statin 20 mg tablet (fictional)', 'One tablet by mouth at night', '2024-04-20'),
  medicationRequest('med-3002', 'demo-1002', 'Placebomycin 250 mg capsule (fictional)', 'One capsule by mouth every 8 hours for 5 days', '2024-05-02'),
  // Mental health records of demo-1001, the patient the cardiology app also reads.
  psychiatricNote('doc-4001', 'demo-1001', '2024-04-28T15:20:00Z',
    'Psychiatry consultation (fictional demo record).\nReason for referral: low mood for three months.\n'
    + 'Assessment: moderate depressive episode. PHQ-9 score 14.\nPlan: talking therapy referral; review in four weeks.\n'),
  phq9Response('qr-5001', 'demo-1001', '2024-04-28T14:55:00Z', [2, 2, 1, 2, 1, 2, 2, 1, 1]),
];

const SEARCHABLE = ['Patient', 'Observation', 'MedicationRequest', 'DocumentReference', 'QuestionnaireResponse'] as const;

const CAPABILITY_STATEMENT = {
  resourceType: 'CapabilityStatement',
  status: 'active',
  date: '2024-05-01',
  kind: 'instance',
  software: { name: 'wardgate demo FHIR stand-in' },
  fhirVersion: '4.0.1',
  format: [FHIR_JSON],
  rest: [{
    mode: 'server',
    resource: SEARCHABLE.map((type) => ({
      type,
      interaction: [{ code: 'read' }, { code: 'search-type' }],
      searchParam: type === 'Patient' ? [] : [{ name: 'patient', type: 'reference' }],
    })),
  }],
};

function operationOutcome(code: string, diagnostics: string) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] };
}

function isSearchable(type: string): type is (typeof SEARCHABLE)[number] {
  return (SEARCHABLE as readonly string[]).includes(type);
}

/** `patient=demo-1001` and `patient=Patient/demo-1001` name the same patient. */
function belongsTo(resource: Resource, patientParam: string): boolean {
  const id = patientParam.startsWith('Patient/') ? patientParam.slice('Patient/'.length) : patientParam;
  if (resource.resourceType === 'Patient') return resource.id === id;
  const subject = resource['subject'] as { reference?: string } | undefined;
  return subject?.reference === `Patient/${id}`;
}

function firstValue(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  return text?.split(',')[0]?.trim();
}

const AUTHORITY = /^(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

/**
 * Bundles carry absolute URLs, and behind wardgate the right origin is the one the client
 * used, which arrives as X-Forwarded-*. Anything malformed falls back to a harmless origin.
 */
function serverBase(req: IncomingMessage): string {
  const proto = firstValue(req.headers['x-forwarded-proto']) === 'https' ? 'https' : 'http';
  const host = firstValue(req.headers['x-forwarded-host']) ?? req.headers.host ?? '';
  return `${proto}://${AUTHORITY.test(host) ? host : 'localhost'}${BASE_PATH}`;
}

function searchset(type: string, query: URLSearchParams, base: string, self: string) {
  const patientParam = query.get('patient');
  const matches = RESOURCES.filter((r) => r.resourceType === type && (patientParam === null || belongsTo(r, patientParam)));
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    total: matches.length,
    link: [{ relation: 'self', url: base + self }],
    entry: matches.map((resource) => ({
      fullUrl: `${base}/${resource.resourceType}/${resource.id}`,
      resource,
      search: { mode: 'match' },
    })),
  };
}

export function handleFhirApi(req: IncomingMessage, res: ServerResponse): void {
  const target = requestTarget(req);
  if (target === undefined) {
    sendJson(res, 400, operationOutcome('invalid', 'The request target must be a path such as /fhir/Patient.'), FHIR_JSON);
    return;
  }
  if (!isReadMethod(req.method)) {
    res.setHeader('allow', 'GET, HEAD');
    sendJson(res, 405, operationOutcome('not-supported', `${req.method ?? 'This method'} is not supported: this server is read-only.`), FHIR_JSON);
    return;
  }
  const segments = target.pathname.split('/').slice(1);
  const [base, type = '', id, ...rest] = segments;
  if (base !== BASE_PATH.slice(1) || rest.length > 0) {
    sendJson(res, 404, operationOutcome('not-found', `No FHIR endpoint at ${target.pathname}.`), FHIR_JSON);
  } else if (type === 'metadata' && id === undefined) {
    sendJson(res, 200, CAPABILITY_STATEMENT, FHIR_JSON);
  } else if (!isSearchable(type)) {
    sendJson(res, 404, operationOutcome('not-found', `Resource type "${type}" is not supported here.`), FHIR_JSON);
  } else if (id === undefined) {
    sendJson(res, 200, searchset(type, target.searchParams, serverBase(req), `/${type}${target.search}`), FHIR_JSON);
  } else {
    const found = RESOURCES.find((r) => r.resourceType === type && r.id === id);
    if (found) sendJson(res, 200, found, FHIR_JSON);
    else sendJson(res, 404, operationOutcome('not-found', `${type}/${id} is not known.`), FHIR_JSON);
  }
}
