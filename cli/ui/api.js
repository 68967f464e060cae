// Talking to the daemon: `POST /api/<method>` with JSON, events over SSE.
// The session cookie goes along by itself (HttpOnly: no script can read it).

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export async function call(method, params = {}) {
  let response;
  try {
    response = await fetch(`/api/${method}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(params),
    });
  } catch (e) {
    throw new ApiError('offline', 'the daemon is not answering (is `meshchat daemon` running?)', 0);
  }
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new ApiError('internal', `HTTP ${response.status}`, response.status);
  }
  if (body.error) throw new ApiError(body.error.code, body.error.message, response.status);
  return body.result;
}

/** Sends a file: to a chat, or (avatar) as my profile picture. */
export async function upload(file, { to, avatar, caption } = {}) {
  const q = new URLSearchParams({ name: file.name || 'file' });
  if (to) q.set('to', to);
  if (avatar) q.set('avatar', 'true');
  if (caption) q.set('caption', caption);
  const response = await fetch(`/api/upload?${q}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: file,
  });
  const body = await response.json().catch(() => ({ error: { code: 'internal', message: `HTTP ${response.status}` } }));
  if (body.error) throw new ApiError(body.error.code, body.error.message, response.status);
  return body.result;
}

export function fileUrl(chat, message, inline) {
  const q = new URLSearchParams({ chat, message });
  if (inline) q.set('inline', 'true');
  return `/api/file?${q}`;
}

export function avatarUrl(peer, version) {
  const q = new URLSearchParams();
  if (peer) q.set('peer', peer);
  if (version) q.set('v', String(version));
  return `/api/avatar?${q}`;
}

/** Calls onEvent for each event, onLagged when events were skipped, onOpen(bool). */
export function events({ onEvent, onLagged, onOpen }) {
  const source = new EventSource('/api/events');
  source.onopen = () => onOpen(true);
  source.onerror = () => onOpen(false);
  source.onmessage = (m) => {
    let line;
    try {
      line = JSON.parse(m.data);
    } catch (e) {
      return;
    }
    if (line.event) onEvent(line.event);
    else if ('lagged' in line) onLagged(line.lagged);
  };
  return source;
}
