import t from 'tap';
import { randomBytes } from 'node:crypto';
import {
  CookieKeyError,
  CookieSealer,
  CookieValueError,
  clearCookie,
  isWardgateCookie,
  parseCookies,
  serializeCookie,
  stripCookies,
} from '../../proxy/identity/cookies.js';

/*
 * The session cookie is the only thing a browser holds, so: a sealed value opens only
 * under the name, key set and time it was sealed for; any change to it is refused without
 * an exception; key rotation keeps existing cookies working until the old key is removed;
 * the header helpers never throw on junk, and upstreams never see wardgate's cookies.
 */

const NAME = '__Host-wardgate-session';
const HOUR = 3_600_000;
let clock = 1_800_000_000_000;
const now = (): number => clock;
const key = (): Buffer => randomBytes(32);

t.test('round trip: string and Buffer payloads come back exactly, with their expiry', async (t) => {
  const sealer = new CookieSealer([key()], { now });
  const text = 'sess_0123456789abcdefghijklmnopqrstuvwxyzABCDE'; // a 43+ char session reference
  t.equal(sealer.open(NAME, sealer.seal(NAME, text, clock + HOUR))?.toString('utf8'), text);
  const binary = randomBytes(200);
  t.same(sealer.open(NAME, sealer.seal(NAME, binary, clock + HOUR)), binary);
  t.same(sealer.open(NAME, sealer.seal(NAME, '', clock + HOUR)), Buffer.alloc(0), 'an empty payload is a payload');
  t.same(sealer.unseal(NAME, sealer.seal(NAME, 'x', clock + 1234))?.expiresAt, clock + 1234);
  const a = sealer.seal(NAME, text, clock + HOUR);
  const b = sealer.seal(NAME, text, clock + HOUR);
  t.not(a, b, 'a fresh IV every time: equal payloads do not give equal cookies');
  t.match(a, /^[A-Za-z0-9_-]+$/, 'base64url, safe as a cookie value without quoting');
  const ivs = new Set<string>();
  for (let i = 0; i < 1000; i++) ivs.add(Buffer.from(sealer.seal(NAME, text, clock + HOUR), 'base64url').subarray(5, 17).toString('hex'));
  t.equal(ivs.size, 1000, 'IVs stay unique across refills of the IV pool');
});

t.test('cookie size: a 43-byte session reference seals to about 110 characters, far under 4 KB', async (t) => {
  const sealer = new CookieSealer([key()], { now });
  const reference = randomBytes(32).toString('base64url');
  t.equal(reference.length, 43);
  const value = sealer.seal(NAME, reference, clock + HOUR);
  t.equal(value.length, Math.ceil((1 + 4 + 12 + 6 + 43 + 16) * 4 / 3));
  const header = serializeCookie(NAME, value, { maxAgeSeconds: 43_200 });
  t.ok(header.length < 300, `Set-Cookie is ${header.length} bytes`);
});

t.test('expiry: refused at and after the sealed time, with the injected clock', async (t) => {
  const sealer = new CookieSealer([key()], { now });
  const value = sealer.seal(NAME, 'ref', clock + 1000);
  t.ok(sealer.open(NAME, value));
  clock += 999;
  t.ok(sealer.open(NAME, value), 'one ms before expiry still opens');
  clock += 1;
  t.equal(sealer.open(NAME, value), undefined, 'at expiry it is refused');
  clock += HOUR;
  t.equal(sealer.open(NAME, value), undefined, 'an old stolen value stays useless');
  t.equal(new CookieSealer([key()], { now: () => Number.NaN }).open(NAME, value), undefined, 'a broken clock fails closed');
});

t.test('the open cache changes nothing observable: names, expiry and payload copies hold on hits too', async (t) => {
  for (const cacheSize of [10, 0]) {
    const sealer = new CookieSealer([key()], { now, cacheSize });
    const value = sealer.seal(NAME, 'ref', clock + 1000);
    const first = sealer.open(NAME, value)!;
    first.fill(0); // a caller scribbling on its result
    t.equal(sealer.open(NAME, value)?.toString(), 'ref', `cacheSize ${cacheSize}: the payload is unchanged on the second open`);
    t.equal(sealer.open('__Host-wardgate-other', value), undefined, `cacheSize ${cacheSize}: an opened value still opens under no other name`);
    t.equal(sealer.unseal(NAME, value)?.expiresAt, clock + 1000);
    clock += 1000;
    t.equal(sealer.open(NAME, value), undefined, `cacheSize ${cacheSize}: expiry applies to remembered values`);
    clock -= 1000;
  }
});

t.test('rotation: old cookies open after a new key is prepended; removing the key ends them', async (t) => {
  const oldKey = key();
  const newKey = key();
  const before = new CookieSealer([oldKey], { now });
  const sealedOld = before.seal(NAME, 'old', clock + HOUR);

  const during = new CookieSealer([newKey, oldKey], { now });
  t.equal(during.open(NAME, sealedOld)?.toString(), 'old', 'sealed with the old key, opened after rotation');
  const sealedNew = during.seal(NAME, 'new', clock + HOUR);
  t.equal(during.open(NAME, sealedNew)?.toString(), 'new');
  t.equal(before.open(NAME, sealedNew), undefined, 'the first key seals: a process without the new key cannot open it');
  t.equal(Buffer.from(sealedNew, 'base64url').readUInt32BE(1), Buffer.from(during.seal(NAME, 'x', clock + 1), 'base64url').readUInt32BE(1), 'the kid is the sealing key\'s');
  t.not(Buffer.from(sealedNew, 'base64url').readUInt32BE(1), Buffer.from(sealedOld, 'base64url').readUInt32BE(1));

  const after = new CookieSealer([newKey], { now });
  t.equal(after.open(NAME, sealedOld), undefined, 'a removed key no longer opens');
  t.equal(after.open(NAME, sealedNew)?.toString(), 'new');
  t.ok(new CookieSealer([newKey, newKey], { now }).open(NAME, sealedNew), 'a key listed twice is harmless');
});

t.test('tampering: every single-byte change, truncation and extension is refused without throwing', async (t) => {
  const sealer = new CookieSealer([key()], { now });
  const value = sealer.seal(NAME, 'session-reference', clock + HOUR);
  const raw = Buffer.from(value, 'base64url');
  const regions: Array<[string, number, number]> = [
    ['version', 0, 1], ['kid', 1, 5], ['iv', 5, 17], ['ciphertext', 17, raw.length - 16], ['tag', raw.length - 16, raw.length],
  ];
  for (const [region, from, to] of regions) {
    let refused = 0;
    for (let i = from; i < to; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const copy = Buffer.from(raw);
        copy[i]! ^= mask;
        if (sealer.open(NAME, copy.toString('base64url')) === undefined) refused++;
      }
    }
    t.equal(refused, (to - from) * 3, `every flipped bit in the ${region} is refused`);
  }
  for (let cut = 1; cut < value.length; cut++) {
    if (sealer.open(NAME, value.slice(0, value.length - cut)) !== undefined) t.fail(`truncated by ${cut} opened`);
  }
  t.equal(sealer.open(NAME, value.slice(1)), undefined, 'front cut');
  t.equal(sealer.open(NAME, Buffer.concat([raw, Buffer.from([0])]).toString('base64url')), undefined, 'a byte appended');
  t.equal(sealer.open(NAME, value + 'A'), undefined, 'a character appended');
  t.equal(sealer.open(NAME, value + 'AA'), undefined, 'two characters appended');
  // Every single-character substitution in the text, which also covers spare bits of the last character.
  let accepted = 0;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  for (let i = 0; i < value.length; i++) {
    for (const c of [alphabet[(alphabet.indexOf(value[i]!) + 1) % 64]!, '=', '+', '/', ' ', '.', 'é']) {
      if (sealer.open(NAME, value.slice(0, i) + c + value.slice(i + 1)) !== undefined) accepted++;
    }
  }
  t.equal(accepted, 0, 'no character substitution anywhere opens');
  t.equal(sealer.open(NAME, value.slice(0, 40) + '=' + value.slice(40)), undefined, 'characters Buffer.from would skip are refused');
  t.ok(sealer.open(NAME, value), 'the untouched value still opens');
});

t.test('wrong name, foreign key, other versions, garbage, empty and huge input are refused', async (t) => {
  const sealer = new CookieSealer([key()], { now });
  const value = sealer.seal(NAME, 'ref', clock + HOUR);
  t.equal(sealer.open('__Host-wardgate-csrf', value), undefined, 'a value cannot move to another cookie');
  t.equal(sealer.open(NAME.toLowerCase(), value), undefined, 'names are exact');
  t.equal(new CookieSealer([key()], { now }).open(NAME, value), undefined, 'a foreign key does not open it');

  const raw = Buffer.from(value, 'base64url');
  for (const version of [0, 2, 255]) {
    const copy = Buffer.from(raw);
    copy[0] = version;
    t.equal(sealer.open(NAME, copy.toString('base64url')), undefined, `version ${version}`);
  }
  const junk: unknown[] = ['', 'A', 'AA', 'AAAA', 'not base64!', '%%%', '"' + value + '"', value + '==',
    Buffer.alloc(41).toString('base64url'), 'x'.repeat(5000), randomBytes(3000).toString('base64url'),
    undefined, null, 42, {}, []];
  for (const input of junk) {
    t.equal(sealer.open(NAME, input as string), undefined, `junk ${JSON.stringify(input)?.slice(0, 30)}`);
  }
  t.equal(sealer.open(undefined as unknown as string, value), undefined, 'a missing name');
});

t.test('bad keys and bad seal input fail at once with stable codes', async (t) => {
  t.throws(() => new CookieSealer([]), CookieKeyError);
  t.throws(() => new CookieSealer([randomBytes(16)]), { code: 'cookie-key-invalid', message: /exactly 32 bytes \(got 16\)/ });
  t.throws(() => new CookieSealer([randomBytes(33)]), { code: 'cookie-key-invalid' });
  t.throws(() => new CookieSealer(['x'.repeat(32) as unknown as Buffer]), { code: 'cookie-key-invalid' });
  t.throws(() => new CookieSealer([Buffer.alloc(32)]), { message: /repeated byte/ });
  const sealer = new CookieSealer([key()], { now });
  for (const bad of [Number.NaN, -1, 1.5, 2 ** 48, Infinity]) {
    t.throws(() => sealer.seal(NAME, 'x', bad), CookieValueError, `expiry ${bad}`);
  }
});

t.test('parseCookies: RFC 6265 pairs, first occurrence wins, junk tolerated', async (t) => {
  const parse = (h: string | string[] | undefined): Record<string, string> => Object.fromEntries(parseCookies(h));
  t.same(parse(undefined), {});
  t.same(parse(''), {});
  t.same(parse('a=1; b=2'), { a: '1', b: '2' });
  t.same(parse('a=1;b=2'), { a: '1', b: '2' }, 'no space after the separator');
  t.same(parse('  a = 1 ;\tb=2\t'), { a: '1', b: '2' }, 'spaces and tabs around names and values');
  t.same(parse('a=1; a=2'), { a: '1' }, 'first occurrence wins');
  t.same(parse('a="quoted"; b="'), { a: 'quoted', b: '"' }, 'one pair of quotes removed, a lone quote kept');
  t.same(parse('a=x=y; b=='), { a: 'x=y', b: '=' }, 'values may contain =');
  t.same(parse('junk; =nameless; c=3; ;;; d'), { c: '3' }, 'pairs without = or without a name are skipped');
  t.same(parse('e='), { e: '' }, 'empty values kept');
  t.same(parse('p=%41'), { p: '%41' }, 'no percent-decoding');
  t.same(parse(['a=1; b=2', 'b=3; c=4']), { a: '1', b: '2', c: '4' }, 'several Cookie headers (HTTP/2) are one list');
  t.same(parse([undefined, 'a=1'] as unknown as string[]), { a: '1' });
  t.same(parse(42 as unknown as string), {});
  t.equal(parseCookies('x'.repeat(70_000)).size, 0, 'one giant junk pair');
  const many = Array.from({ length: 1000 }, (_, i) => `c${i}=${i}`).join('; ');
  t.equal(parseCookies(many).size, 256, 'at most 256 cookies');
  const long = `first=1; ${'pad=' + 'y'.repeat(65_530)}; late=2`;
  t.same(parse(long), { first: '1' }, 'stops at 64 KiB, on a whole pair');

  const started = process.hrtime.bigint();
  parseCookies(';'.repeat(60_000) + 'a=1');
  parseCookies('a'.repeat(30_000) + ';'.repeat(30_000) + '=');
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.ok(ms < 100, `pathological headers parse in linear time (${ms.toFixed(1)} ms)`);
});

t.test('serializeCookie and clearCookie: __Host- attributes, nothing else', async (t) => {
  t.equal(serializeCookie(NAME, 'abc'), `${NAME}=abc; Path=/; Secure; HttpOnly; SameSite=Lax`);
  t.equal(serializeCookie(NAME, 'abc', { maxAgeSeconds: 3600.9, sameSite: 'Strict' }), `${NAME}=abc; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Strict`);
  t.equal(serializeCookie(NAME, 'abc', { sameSite: 'None' }), `${NAME}=abc; Path=/; Secure; HttpOnly; SameSite=None`);
  t.equal(clearCookie(NAME), `${NAME}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax`);
  t.notMatch(serializeCookie(NAME, 'abc'), /Domain/i, 'host-only');
  t.throws(() => serializeCookie('wardgate', 'x'), CookieValueError, 'names must be __Host-');
  t.throws(() => serializeCookie('__Host-a b', 'x'), { code: 'cookie-value-invalid' });
  t.throws(() => serializeCookie(NAME, 'a;b'), CookieValueError, 'a value cannot inject attributes');
  t.throws(() => serializeCookie(NAME, 'a b'), CookieValueError);
  t.throws(() => serializeCookie(NAME, 'x', { maxAgeSeconds: -1 }), CookieValueError);
  t.throws(() => serializeCookie(NAME, 'x', { maxAgeSeconds: Number.NaN }), CookieValueError);
  t.throws(() => serializeCookie(NAME, 'x', { sameSite: 'lax' as 'Lax' }), CookieValueError);
  t.throws(() => clearCookie('session'), CookieValueError);
});

t.test('stripCookies: wardgate cookies removed, all others byte-for-byte in order', async (t) => {
  const ours = isWardgateCookie;
  t.equal(stripCookies('a=1; __Host-wardgate-session=xyz; b=2', ours), 'a=1; b=2');
  t.equal(stripCookies('__Host-wardgate-session=xyz; b="2";  c=3', ours), 'b="2";  c=3', 'leading cookie; odd spacing kept');
  t.equal(stripCookies('a=1;__Host-wardgate-session=xyz', ours), 'a=1');
  t.equal(stripCookies('__Host-wardgate-session=xyz', ours), undefined, 'nothing left');
  t.equal(stripCookies('__Host-wardgate-session=x; __Host-wardgate-csrf=y;  ', ours), undefined);
  t.equal(stripCookies(' __Host-wardgate-session =x;JSESSIONID=abc;flag', ours), 'JSESSIONID=abc;flag', 'spaced name still ours; nameless junk kept');
  const header = 'x=1;y=2; z=%20';
  t.equal(stripCookies(header, ours), header, 'nothing of ours: the same string back');
  t.equal(stripCookies('', ours), undefined);
  t.equal(stripCookies(' ; ', ours), undefined);
  t.equal(stripCookies('__Host-wardgateX=1; __Host-other=2', ours), '__Host-other=2', 'the whole __Host-wardgate family');
  t.equal(stripCookies('a=__Host-wardgate-session', ours), 'a=__Host-wardgate-session', 'values are not names');
  t.equal(stripCookies(undefined as unknown as string, ours), undefined);
});
