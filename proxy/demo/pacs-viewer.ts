import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { html, type Html } from './page.js';
import { onePageApp, requestTarget, type RequestHandler } from './respond.js';

/*
 * Stand-in for a PACS image viewer. Viewers stream over WebSockets, so this one does too:
 * the page opens `/ws`, which reports study-loading progress and echoes what it is sent.
 * It shows that wardgate authorizes and carries upgrades, and cuts them when access ends.
 */

const STUDY_UID = '1.2.840.113619.2.55.3';
const PROGRESS_INTERVAL_MS = 500;
// Echoes are short demo strings; a cap keeps a misbehaving client from buffering megabytes.
const MAX_MESSAGE_BYTES = 64 * 1024;
const UNSUPPORTED_DATA = 1003;

// Static script (nothing interpolated): it reads its WebSocket address from the page's own location.
const VIEWER_SCRIPT = html`<script>
(() => {
  const log = document.getElementById('log');
  const bar = document.getElementById('progress');
  const show = (text) => {
    const line = document.createElement('li');
    line.textContent = text;
    log.prepend(line);
    while (log.children.length > 20) log.lastElementChild.remove();
  };
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(scheme + '//' + location.host + '/ws');
  socket.onopen = () => { show('connected'); socket.send('hello from the viewer'); };
  socket.onmessage = (event) => {
    show(event.data);
    try {
      const message = JSON.parse(event.data);
      if (typeof message.progress === 'number') bar.value = message.progress;
    } catch {}
  };
  socket.onclose = (event) => show('closed (' + event.code + ')');
})();
</script>`;

function renderHome(): Html {
  return html`<p>Study <code>${STUDY_UID}</code> loading over a WebSocket:</p>
<p><progress id="progress" max="100" value="0"></progress></p>
<ol id="log" reversed></ol>
${VIEWER_SCRIPT}`;
}

export interface PacsViewer {
  handleRequest: RequestHandler;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Ends every open WebSocket; closing the http server alone leaves upgraded sockets open. */
  close(): void;
}

function streamStudy(socket: WebSocket): void {
  let progress = 0;
  const sendProgress = (): void => {
    if (socket.readyState !== socket.OPEN) return;
    socket.send(JSON.stringify({ study: STUDY_UID, progress }));
    progress = progress >= 100 ? 0 : progress + 10;
  };
  sendProgress();
  const timer = setInterval(sendProgress, PROGRESS_INTERVAL_MS);
  socket.on('close', () => clearInterval(timer));
  // A peer that vanishes mid-frame surfaces here; 'close' follows, so there is nothing to do.
  socket.on('error', () => {});
  socket.on('message', (data, isBinary) => {
    if (isBinary) {
      socket.close(UNSUPPORTED_DATA, 'text messages only');
      return;
    }
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ echo: data.toString() }));
  });
}

export function createPacsViewer(): PacsViewer {
  const sockets = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  return {
    handleRequest: onePageApp('pacs', 'PACS viewer (demo stand-in)', renderHome),
    handleUpgrade(req, socket, head) {
      if (requestTarget(req)?.pathname !== '/ws') {
        socket.destroy();
        return;
      }
      sockets.handleUpgrade(req, socket, head, streamStudy);
    },
    close() {
      for (const client of sockets.clients) client.terminate();
      sockets.close();
    },
  };
}
