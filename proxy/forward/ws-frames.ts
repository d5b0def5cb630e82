/*
 * Just enough of RFC 6455 framing to close a proxied WebSocket politely. wardgate pipes
 * WebSocket bytes untouched, so before it can inject a close frame it must know where the
 * upstream's current frame ends; writing mid-frame would corrupt the client's stream.
 */

/** Follows frame boundaries in a byte stream without buffering payloads. */
export class FrameBoundaryTracker {
  private readonly header = Buffer.alloc(14);
  private have = 0;
  private need = 2;
  private payload = 0;

  get atBoundary(): boolean {
    return this.have === 0 && this.payload === 0;
  }

  /**
   * Reads `chunk`. With `stopAtBoundary`, stops right after the first frame that ends
   * inside it. Returns how many bytes were read.
   */
  consume(chunk: Uint8Array, stopAtBoundary = false): number {
    let i = 0;
    while (i < chunk.length) {
      if (this.payload > 0) {
        const take = Math.min(this.payload, chunk.length - i);
        this.payload -= take;
        i += take;
        if (this.payload === 0 && stopAtBoundary) return i;
        continue;
      }
      this.header[this.have++] = chunk[i++]!;
      if (this.have === 2) {
        const len7 = this.header[1]! & 0x7f;
        const masked = (this.header[1]! & 0x80) !== 0;
        this.need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      }
      if (this.have === this.need) {
        const len7 = this.header[1]! & 0x7f;
        this.payload = len7 === 126 ? this.header.readUInt16BE(2) : len7 === 127 ? Number(this.header.readBigUInt64BE(2)) : len7;
        this.have = 0;
        this.need = 2;
        if (this.payload === 0 && stopAtBoundary) return i;
      }
    }
    return i;
  }
}

/** An unmasked (server-to-client) close frame; the reason is cut to 123 bytes of UTF-8. */
export function closeFrame(code: number, reason: string): Buffer {
  let text = Buffer.from(reason, 'utf8');
  if (text.length > 123) {
    // Never cut inside a character: clients fail the connection (1007) on broken UTF-8.
    let end = 123;
    while (end > 0 && (text[end]! & 0xc0) === 0x80) end--;
    text = text.subarray(0, end);
  }
  return Buffer.concat([Buffer.from([0x88, 2 + text.length, code >> 8, code & 0xff]), text]);
}
