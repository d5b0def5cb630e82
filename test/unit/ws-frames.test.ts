import t from 'tap';
import { Writable } from 'node:stream';
import * as ws from 'ws';
import { FrameBoundaryTracker, closeFrame } from '../../proxy/forward/ws-frames.js';

/*
 * FrameBoundaryTracker must know, for any way TCP slices a byte stream, exactly where each
 * RFC 6455 frame ends: wardgate injects its close frame there, and a close frame written
 * one byte early or late corrupts the client's stream. closeFrame must be a frame a real
 * client accepts. Frames are built by hand here and cross-checked against ws's own Sender
 * and Receiver.
 */

// ws ships Sender and Receiver at runtime (wrapper.mjs) but @types/ws does not declare them.
interface SenderClass {
  frame(data: Buffer, options: { fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean; generateMask?: (mask: Buffer) => void }): Buffer[];
}
type ReceiverInstance = Writable & { on(event: 'conclude', listener: (code: number, reason: Buffer) => void): ReceiverInstance };
const { Sender, Receiver } = ws as unknown as {
  Sender: SenderClass;
  Receiver: new (options: { isServer: boolean }) => ReceiverInstance;
};

const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

interface FrameOptions {
  fin?: boolean;
  mask?: Buffer;
  /** Declared payload length when it should differ from the bytes given (headers only). */
  declared?: bigint;
}

/** One RFC 6455 frame, built byte by byte. */
function frame(opcode: number, payload: Buffer, { fin = true, mask, declared }: FrameOptions = {}): Buffer {
  const length = declared ?? BigInt(payload.length);
  const first = (fin ? 0x80 : 0) | opcode;
  const maskBit = mask ? 0x80 : 0;
  let header: Buffer;
  if (length < 126n) {
    header = Buffer.from([first, maskBit | Number(length)]);
  } else if (length < 65536n) {
    header = Buffer.alloc(4);
    header[0] = first;
    header[1] = maskBit | 126;
    header.writeUInt16BE(Number(length), 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = first;
    header[1] = maskBit | 127;
    header.writeBigUInt64BE(length, 2);
  }
  if (!mask) return Buffer.concat([header, payload]);
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i] = masked[i]! ^ mask[i % 4]!;
  return Buffer.concat([header, mask, masked]);
}

/** Deterministic payload bytes, so a misplaced boundary cannot hide behind zeros. */
function bytes(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** The offsets (exclusive ends) of each frame in a concatenation. */
function ends(frames: Buffer[]): number[] {
  const out: number[] = [];
  let at = 0;
  for (const f of frames) out.push((at += f.length));
  return out;
}

const SIZES = [
  { name: '7-bit length (0)', n: 0 },
  { name: '7-bit length (1)', n: 1 },
  { name: '7-bit length (125, largest)', n: 125 },
  { name: '16-bit length (126, smallest)', n: 126 },
  { name: '16-bit length (65535, largest)', n: 65535 },
  { name: '64-bit length (65536, smallest)', n: 65536 },
  { name: '64-bit length (70000)', n: 70000 },
];

t.test('the hand-built frames are what ws itself sends', async (t) => {
  for (const { name, n } of SIZES) {
    const payload = bytes(n);
    const ours = frame(0x2, payload);
    const theirs = Buffer.concat(Sender.frame(Buffer.from(payload), { fin: true, opcode: 0x2, mask: false, readOnly: false, rsv1: false }));
    t.ok(ours.equals(theirs), `${name}: unmasked frame matches ws Sender byte for byte`);
    const oursMasked = frame(0x2, payload, { mask: MASK });
    const theirsMasked = Buffer.concat(Sender.frame(Buffer.from(payload), {
      fin: true, opcode: 0x2, mask: true, readOnly: false, rsv1: false, generateMask: (m) => MASK.copy(m),
    }));
    t.ok(oursMasked.equals(theirsMasked), `${name}: masked frame matches ws Sender byte for byte`);
  }
});

t.test('a whole frame in one chunk ends exactly at its last byte', async (t) => {
  for (const { name, n } of SIZES) {
    for (const mask of [undefined, MASK]) {
      const label = `${name}, ${mask ? 'masked' : 'unmasked'}`;
      const f = frame(0x2, bytes(n), { mask });
      const tracker = new FrameBoundaryTracker();
      t.ok(tracker.atBoundary, `${label}: a fresh tracker is at a boundary`);
      t.equal(tracker.consume(f), f.length, `${label}: consume reads the whole chunk`);
      t.ok(tracker.atBoundary, `${label}: at a boundary after the frame's last byte`);

      const short = new FrameBoundaryTracker();
      short.consume(f.subarray(0, f.length - 1));
      t.notOk(short.atBoundary, `${label}: not at a boundary one byte before the end`);
      t.equal(short.consume(f.subarray(f.length - 1), true), 1, `${label}: the last byte ends the frame`);
      t.ok(short.atBoundary, `${label}: at a boundary once the last byte arrives`);
    }
  }
});

t.test('a frame split at every byte position is tracked the same way', async (t) => {
  const cases = [
    { name: 'small masked text', f: frame(0x1, bytes(40), { mask: MASK }) },
    { name: 'empty masked ping', f: frame(0x9, Buffer.alloc(0), { mask: MASK }) },
    { name: '16-bit unmasked binary', f: frame(0x2, bytes(300)) },
    { name: '16-bit masked binary', f: frame(0x2, bytes(300), { mask: MASK }) },
    { name: '64-bit unmasked binary', f: frame(0x2, bytes(65536)) },
    { name: '64-bit masked binary', f: frame(0x2, bytes(65540), { mask: MASK }) },
  ];
  for (const { name, f } of cases) {
    const wrong: string[] = [];
    for (let p = 0; p <= f.length; p++) {
      const tracker = new FrameBoundaryTracker();
      const first = tracker.consume(f.subarray(0, p), true);
      const expectBoundary = p === 0 || p === f.length;
      if (first !== p) wrong.push(`split ${p}: first consume read ${first}, expected ${p}`);
      if (tracker.atBoundary !== expectBoundary) wrong.push(`split ${p}: atBoundary ${tracker.atBoundary} after the first part`);
      const second = tracker.consume(f.subarray(p), true);
      if (second !== f.length - p) wrong.push(`split ${p}: second consume read ${second}, expected ${f.length - p}`);
      if (!tracker.atBoundary) wrong.push(`split ${p}: not at a boundary after the whole frame`);
      if (wrong.length > 5) break;
    }
    t.same(wrong, [], `${name} (${f.length} bytes): a boundary only at the frame's end, for all ${f.length + 1} split positions`);
  }
});

t.test('fed one byte at a time, the tracker is at a boundary exactly at each frame end', async (t) => {
  const frames = [
    frame(0x1, Buffer.from('hello')),
    frame(0x9, Buffer.alloc(0)),
    frame(0x1, bytes(10), { fin: false, mask: MASK }),
    frame(0x0, bytes(200), { fin: false }),
    frame(0x0, Buffer.alloc(0)),
    frame(0x2, bytes(66000), { mask: MASK }),
    frame(0xa, Buffer.alloc(0), { mask: MASK }),
    frame(0x2, bytes(126)),
    frame(0x8, Buffer.from([0x03, 0xe8])),
  ];
  const stream = Buffer.concat(frames);
  const tracker = new FrameBoundaryTracker();
  const seen: number[] = [];
  for (let i = 0; i < stream.length; i++) {
    tracker.consume(stream.subarray(i, i + 1));
    if (tracker.atBoundary) seen.push(i + 1);
  }
  t.same(seen, ends(frames), 'boundaries reported after exactly the last byte of every frame, and nowhere else');
});

t.test('several frames in one chunk', async (t) => {
  const frames = [
    frame(0x1, Buffer.from('first')),
    frame(0x2, bytes(500), { mask: MASK }),
    frame(0x1, Buffer.alloc(0)),
    frame(0x2, bytes(70000)),
    frame(0x1, Buffer.from('last'), { mask: MASK }),
  ];
  const chunk = Buffer.concat(frames);

  const whole = new FrameBoundaryTracker();
  t.equal(whole.consume(chunk), chunk.length, 'without stopAtBoundary the whole chunk is read');
  t.ok(whole.atBoundary, 'and the tracker ends at a boundary');

  const stepping = new FrameBoundaryTracker();
  const stops: number[] = [];
  let at = 0;
  while (at < chunk.length) {
    const n = stepping.consume(chunk.subarray(at), true);
    if (n === 0) break;
    at += n;
    stops.push(at);
    if (!stepping.atBoundary) break;
  }
  t.same(stops, ends(frames), 'consume(chunk, true) stops right after each frame end in turn');

  const first = new FrameBoundaryTracker();
  t.equal(first.consume(chunk, true), frames[0]!.length, 'consume(chunk, true) returns the length of the first frame only');
  t.ok(first.atBoundary, 'and leaves the tracker at that boundary');
});

t.test('consume(chunk, true) mid-frame stops after the rest of the current frame', async (t) => {
  const current = frame(0x2, bytes(100_000));
  const next = frame(0x1, Buffer.from('must not be read'));
  const tracker = new FrameBoundaryTracker();
  tracker.consume(current.subarray(0, 5_000));
  t.notOk(tracker.atBoundary, 'mid-frame after the first 5000 bytes');

  const rest = Buffer.concat([current.subarray(5_000), next]);
  t.equal(tracker.consume(rest.subarray(0, 40_000), true), 40_000, 'a chunk that does not reach the frame end is read whole');
  t.notOk(tracker.atBoundary, 'still mid-frame');
  const n = tracker.consume(rest.subarray(40_000), true);
  t.equal(n, current.length - 45_000, 'stops exactly where the current frame ends, before the next frame');
  t.ok(tracker.atBoundary, 'at a boundary after the stop');

  const header = new FrameBoundaryTracker();
  const big = frame(0x2, bytes(300), { mask: MASK });
  header.consume(big.subarray(0, 3));
  t.notOk(header.atBoundary, 'mid-header (3 of 8 header bytes) is not a boundary');
  t.equal(header.consume(Buffer.concat([big.subarray(3), next]), true), big.length - 3, 'a frame whose header was split stops at its own end');
});

t.test('zero-length frames', async (t) => {
  const empty = frame(0x9, Buffer.alloc(0));
  const emptyMasked = frame(0x1, Buffer.alloc(0), { mask: MASK });
  const tail = frame(0x1, Buffer.from('x'));

  const a = new FrameBoundaryTracker();
  t.equal(a.consume(Buffer.concat([empty, empty, tail]), true), 2, 'an empty unmasked frame ends after its 2 header bytes');
  t.ok(a.atBoundary, 'at a boundary after an empty frame');

  const b = new FrameBoundaryTracker();
  t.equal(b.consume(Buffer.concat([emptyMasked, tail]), true), 6, 'an empty masked frame ends after header and mask key (6 bytes)');
  t.ok(b.atBoundary, 'at a boundary after an empty masked frame');

  const c = new FrameBoundaryTracker();
  t.equal(c.consume(empty.subarray(0, 1), true), 1, 'half an empty frame header is read');
  t.notOk(c.atBoundary, 'half a header is not a boundary');
  t.equal(c.consume(Buffer.concat([empty.subarray(1), tail]), true), 1, 'the second header byte ends the empty frame');
  t.ok(c.atBoundary, 'at a boundary after the second header byte');

  const d = new FrameBoundaryTracker();
  t.equal(d.consume(Buffer.alloc(0), true), 0, 'an empty chunk reads nothing');
  t.ok(d.atBoundary, 'and leaves a fresh tracker at a boundary');
});

t.test('64-bit lengths are not truncated to 32 bits', async (t) => {
  // 2^32 + 5: a tracker that kept only the low 32 bits would think the frame ends after 5 bytes.
  const header = frame(0x2, Buffer.alloc(0), { declared: 2n ** 32n + 5n });
  const tracker = new FrameBoundaryTracker();
  t.equal(tracker.consume(header), 10, 'the 10-byte header is read');
  t.notOk(tracker.atBoundary, 'a header announcing 4 GiB is not a boundary');
  t.equal(tracker.consume(Buffer.alloc(1 << 20), true), 1 << 20, 'one MiB of payload does not end the frame');
  t.notOk(tracker.atBoundary, 'still mid-frame after 1 MiB of a 4 GiB frame');
});

t.test('frames ws itself produces, in a stream split into odd chunks', async (t) => {
  const options = (opcode: number, mask: boolean, fin = true) => ({ fin, opcode, mask, readOnly: false, rsv1: false });
  const frames = [
    Buffer.concat(Sender.frame(Buffer.from('hi'), options(0x1, true))),
    Buffer.concat(Sender.frame(bytes(130), options(0x2, false))),
    Buffer.concat(Sender.frame(Buffer.alloc(0), options(0x9, true))),
    Buffer.concat(Sender.frame(bytes(80_000), options(0x2, true, false))),
    Buffer.concat(Sender.frame(bytes(17), options(0x0, true))),
    Buffer.concat(Sender.frame(bytes(65_536), options(0x2, false))),
  ];
  const stream = Buffer.concat(frames);
  for (const size of [1, 3, 7, 125, 4096, 65_537]) {
    const tracker = new FrameBoundaryTracker();
    const seen: number[] = [];
    let at = 0;
    while (at < stream.length) {
      const chunk = stream.subarray(at, Math.min(at + size, stream.length));
      let offset = 0;
      while (offset < chunk.length) {
        offset += tracker.consume(chunk.subarray(offset), true);
        if (tracker.atBoundary) seen.push(at + offset);
      }
      at += chunk.length;
    }
    t.same(seen, ends(frames), `${size}-byte chunks: every frame end from ws's Sender is found, in order`);
  }
});

/** Parses `bytes` as a server-to-client stream with ws's own Receiver. */
function receive(data: Buffer): Promise<{ code: number; reason: Buffer } | { error: Error }> {
  return new Promise((resolve) => {
    const receiver = new Receiver({ isServer: false });
    receiver.on('conclude', (code, reason) => resolve({ code, reason: Buffer.from(reason) }));
    receiver.on('error', (error: Error) => resolve({ error }));
    receiver.write(data);
    setTimeout(() => resolve({ error: new Error('ws Receiver reported nothing within 1s') }), 1000).unref();
  });
}

t.test('closeFrame: code 1001 with a reason', async (t) => {
  const f = closeFrame(1001, 'going away');
  t.same([...f.subarray(0, 4)], [0x88, 12, 0x03, 0xe9], 'FIN + opcode 8, unmasked, payload 12, code 1001 big-endian');
  t.equal(f.subarray(4).toString('utf8'), 'going away', 'the reason follows the code');
  t.equal(f.length, 14, 'nothing after the reason');
  const tracker = new FrameBoundaryTracker();
  t.equal(tracker.consume(f, true), f.length, 'the tracker sees exactly one frame');
  const parsed = await receive(f);
  t.same(parsed, { code: 1001, reason: Buffer.from('going away') }, 'ws Receiver reads code 1001 and the reason');

  t.same([...closeFrame(1008, '')], [0x88, 2, 0x03, 0xf0], 'an empty reason gives a 2-byte payload with code 1008');
  t.same(await receive(closeFrame(1008, '')), { code: 1008, reason: Buffer.alloc(0) }, 'ws Receiver reads 1008 with no reason');
});

t.test('closeFrame: a long reason is truncated to 123 bytes', async (t) => {
  const reason = 'r'.repeat(200);
  const f = closeFrame(1001, reason);
  t.equal(f[1], 125, 'payload length 125: the control-frame maximum (2 code bytes + 123)');
  t.equal(f.length, 127, 'frame is header + 125 payload bytes');
  t.equal(f.subarray(4).toString('utf8'), reason.slice(0, 123), 'the first 123 bytes of the reason are kept');
  t.same(await receive(f), { code: 1001, reason: Buffer.from(reason.slice(0, 123)) }, 'ws Receiver accepts the truncated frame');
});

t.test('closeFrame: truncation never splits a UTF-8 character', async (t) => {
  // RFC 6455 §7.1.6/§8.1: the reason is UTF-8; an invalid one makes the client fail the
  // connection (ws reports 1007) instead of seeing wardgate's code.
  for (const [name, reason] of [
    ['2-byte characters (é)', 'é'.repeat(100)],
    ['4-byte characters (emoji)', '\u{1F600}'.repeat(40)],
    ['3-byte characters (€) ending exactly at 123', '€'.repeat(50)],
  ] as const) {
    const f = closeFrame(1008, reason);
    const text = f.subarray(4);
    t.ok(text.length <= 123, `${name}: reason is at most 123 bytes`);
    let decoded: string | undefined;
    try {
      decoded = new TextDecoder('utf-8', { fatal: true }).decode(text);
    } catch {
      decoded = undefined;
    }
    t.ok(decoded !== undefined && reason.startsWith(decoded), `${name}: reason is valid UTF-8 and a prefix of the original`);
    const kept = [...(decoded ?? '')].length;
    t.ok(Buffer.byteLength([...reason].slice(0, kept + 1).join('')) > 123, `${name}: as many whole characters as fit are kept`);
    const parsed = await receive(f);
    t.ok('code' in parsed && parsed.code === 1008, `${name}: ws Receiver accepts the frame and reads code 1008`);
  }
});
