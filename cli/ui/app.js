// The meshchat desktop app: chat list, conversation, composer, contacts,
// groups, profile and settings, over the daemon's API (api.js). All remote
// text goes through dom.js's h(), as text.

import { call, upload, events, fileUrl, avatarUrl, ApiError } from './api.js';
import { h, clear, $, time, day, when, bytes, prompt, confirm } from './dom.js';
import { PAGE, state, navigate, short, nameOfPerson, nameOfKey, otherKey, chatTitle, presenceText, preview } from './names.js';
import { connect, closePanel, showAddContact, showContacts, showNewGroup, showGroupInfo, showProfile, showSettings } from './panels.js';

const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🙏'];

// ---------- errors and banner ----------

function toast(message) {
  // Kept for the browser tests' failure reports.
  (window.__toasts = window.__toasts || []).push(String(message));
  const el = h('div', { class: 'toast', role: 'alert' }, message);
  document.body.append(el);
  setTimeout(() => el.remove(), 6000);
}

async function attempt(f) {
  try {
    return await f();
  } catch (e) {
    toast(e instanceof ApiError ? e.message : String(e));
    if (e instanceof ApiError && e.status === 401) showSignedOut();
    return undefined;
  }
}

function showSignedOut() {
  const b = $('banner');
  b.hidden = false;
  b.className = 'banner error';
  clear(b).append('Not signed in. Run ', h('code', {}, 'meshchat ui'), ' to open the app.');
}

function updateBanner(sseOpen) {
  const b = $('banner');
  if (sseOpen === false) {
    b.hidden = false;
    b.className = 'banner error';
    clear(b).append('Lost the daemon. Is ', h('code', {}, 'meshchat daemon'), ' running? Retrying…');
    return;
  }
  if (state.connected.size === 0) {
    b.hidden = false;
    b.className = 'banner';
    clear(b).append('No peer is reachable right now: messages wait and go out when someone is.');
  } else {
    b.hidden = true;
  }
}
// ---------- loading ----------

async function loadPeople() {
  const r = await call('ui_people');
  state.me = r.me;
  state.people = new Map(r.people.map((p) => [p.key, p]));
  state.byPeer = new Map(r.people.map((p) => [p.peer, p]));
  const me = $('me-button');
  clear(me).append(avatar(state.me.peer, state.me.name || 'Me', state.me.profile));
}

async function loadStatus() {
  const s = await call('network_status');
  state.connected = new Set(s.connected);
  updateBanner();
}

async function loadChats() {
  state.chats = await call('chats_list');
  renderChatList();
}

async function loadHistory() {
  if (!state.current) return;
  const chat = state.current;
  const entries = await call('chats_history', { chat, limit: state.limit });
  if (state.current !== chat) return;
  state.entries = entries;
  renderMessages();
}

let refreshTimer = null;
const pending = { people: false, chats: false, history: false, status: false, requests: false };
/** Re-reads what changed, at most a few times a second. */
function refresh(what) {
  for (const k of what) pending[k] = true;
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    const todo = { ...pending };
    for (const k of Object.keys(pending)) pending[k] = false;
    await attempt(async () => {
      const before = todo.people ? JSON.stringify([...state.people.values()]) : '';
      if (todo.people) await loadPeople();
      const peopleChanged = todo.people && before !== JSON.stringify([...state.people.values()]);
      if (todo.status) await loadStatus();
      // History first: reading it marks the open chat read, so the list after it is current.
      if (todo.history || todo.people) await loadHistory();
      if (todo.chats || todo.people || todo.history) await loadChats();
      if (todo.people) renderHeader();
      if ((peopleChanged || todo.requests) && state.panel === 'contacts') await showContacts(true);
    });
  }, 100);
}
// ---------- chat list ----------

function avatar(peer, name, profile) {
  const initial = (name || '?').replace(/^~/, '').slice(0, 1).toUpperCase();
  const el = h('span', { class: 'avatar', 'aria-hidden': 'true' }, initial);
  if (profile && profile.avatar) {
    const img = h('img', { alt: '', src: avatarUrl(peer === state.me?.peer ? null : peer, profile.version) });
    img.addEventListener('error', () => img.remove());
    el.append(img);
  }
  return el;
}

function renderChatList() {
  const list = clear($('chat-list'));
  const q = state.search.toLowerCase();
  const chats = [...state.chats].sort((a, b) => (b.last?.sent_at_ms || 0) - (a.last?.sent_at_ms || 0));
  for (const chat of chats) {
    const title = chatTitle(chat);
    const lastText = chat.last ? preview(chat.last) : 'No messages yet';
    if (q && !title.toLowerCase().includes(q) && !lastText.toLowerCase().includes(q)) continue;
    const key = otherKey(chat);
    const person = key ? state.people.get(key) : null;
    const online = person && person.presence && person.presence.state === 'online';
    const item = h(
      'li',
      {
        class: 'chat-item' + (chat.id === state.current ? ' active' : ''),
        role: 'option',
        tabindex: '0',
        'aria-selected': chat.id === state.current ? 'true' : 'false',
        'aria-label': `${title}${chat.unread ? `, ${chat.unread} unread` : ''}`,
        dataset: { chat: chat.id },
        onclick: () => openChat(chat.id),
        onkeydown: (e) => {
          if (e.key === 'Enter') openChat(chat.id);
          if (e.key === 'ArrowDown') item.nextElementSibling?.focus();
          if (e.key === 'ArrowUp') item.previousElementSibling?.focus();
        },
      },
      h('span', { class: 'avatar-wrap' }, avatar(person?.peer, title, person?.profile), online ? h('span', { class: 'online-dot', title: 'online' }) : null),
      h(
        'div',
        { class: 'chat-text' },
        h('div', { class: 'chat-top' }, h('span', { class: 'chat-name' }, chat.name ? `# ${title}` : title), h('span', { class: 'chat-time' }, chat.last ? when(chat.last.sent_at_ms) : '')),
        h(
          'div',
          { class: 'chat-bottom' },
          h('span', { class: 'chat-preview' }, chat.last && chat.kind.Group ? `${nameOfKey(chat.last.author)}: ${lastText}` : lastText),
          chat.unread ? h('span', { class: 'unread', 'aria-label': `${chat.unread} unread` }, String(chat.unread)) : null,
        ),
      ),
    );
    list.append(item);
  }
  if (!list.firstChild) {
    list.append(h('li', { class: 'hint' }, state.chats.length ? 'No chat matches.' : 'No chats yet. Add a contact with + and say hello.'));
  }
}

// ---------- conversation ----------

async function openChat(id) {
  navigate();
  state.panel = null;
  state.current = id;
  state.limit = PAGE;
  state.replyTo = null;
  $('reply-bar').hidden = true;
  $('empty').hidden = true;
  $('panel').hidden = true;
  $('conversation').hidden = false;
  document.body.classList.add('in-chat');
  renderHeader();
  clear($('messages'));
  await attempt(loadHistory);
  await attempt(loadChats);
  $('text').focus();
}

function currentChat() {
  return state.chats.find((c) => c.id === state.current);
}

function renderHeader() {
  const chat = currentChat();
  if (!chat) return;
  $('conv-name').textContent = chat.name ? `# ${chatTitle(chat)}` : chatTitle(chat);
  const key = otherKey(chat);
  const person = key ? state.people.get(key) : null;
  const typers = [...(state.typing.get(chat.id) || new Map()).entries()].filter(([, exp]) => exp > Date.now());
  let status = '';
  if (typers.length) {
    status = chat.kind.Group ? `${typers.map(([p]) => nameOfPerson(state.byPeer.get(p)) || short(p)).join(', ')} typing…` : 'typing…';
  } else if (person) {
    status = presenceText(person);
    if (!person.contact) status = `not in your contacts${status ? ` · ${status}` : ''}`;
  } else if (chat.kind.Group) {
    status = 'group';
  }
  $('conv-status').textContent = status;
  $('conv-info').hidden = !chat.kind.Group;
  const conv = $('conversation');
  conv.querySelector('.add-contact')?.remove();
  if (person && !person.contact) {
    const add = h('button', { class: 'add-contact', onclick: () => attempt(async () => {
      await call('contacts_add', { peer: person.peer, name: person.profile?.name || null });
      refresh(['people']);
    }) }, 'Add to contacts');
    conv.querySelector('.conv-header').insertBefore(add, $('conv-info'));
  }
}

const TICKS = { pending: '🕓', sent: '✓', delivered: '✓✓', read: '✓✓' };
const TICK_NAMES = { pending: 'Waiting to send', sent: 'Sent to a relay', delivered: 'Delivered', read: 'Read' };

function renderMessages() {
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const oldHeight = box.scrollHeight;
  const oldTop = box.scrollTop;
  clear(box);
  const chat = currentChat();
  const byId = new Map(state.entries.map((e) => [e.message.id, e.message]));
  if (state.entries.length >= state.limit) {
    box.append(h('button', { class: 'older', onclick: loadOlder }, 'Older messages'));
  }
  let lastDay = null;
  for (const entry of state.entries) {
    const m = entry.message;
    const d = day(m.sent_at_ms);
    if (d !== lastDay) {
      box.append(h('div', { class: 'day', role: 'separator' }, d));
      lastDay = d;
    }
    box.append(messageView(entry, chat, byId));
  }
  if (atBottom || !box.dataset.loaded) {
    box.scrollTop = box.scrollHeight;
    box.dataset.loaded = '1';
  } else if (box.dataset.older) {
    box.scrollTop = box.scrollHeight - oldHeight + oldTop;
    delete box.dataset.older;
  } else {
    box.scrollTop = oldTop;
  }
}

function messageView(entry, chat, byId) {
  const m = entry.message;
  const mine = entry.outgoing;
  const parts = [];
  if (chat && chat.kind.Group && !mine) parts.push(h('div', { class: 'author' }, nameOfKey(m.author)));
  if (m.reply_to) {
    const quoted = byId.get(m.reply_to);
    parts.push(h('div', { class: 'quote' }, h('b', {}, quoted ? nameOfKey(quoted.author) : ''), h('span', {}, quoted ? preview(quoted) : 'an earlier message')));
  }
  if (m.deleted) {
    parts.push(h('div', { class: 'text deleted' }, 'This message was deleted'));
  } else {
    if (m.attachment) parts.push(attachmentView(chat, m));
    if (m.text) parts.push(h('div', { class: 'text' }, m.text));
  }
  const meta = h('div', { class: 'meta' }, m.edited_at_ms && !m.deleted ? h('span', { class: 'edited' }, 'edited') : null, h('span', {}, time(m.sent_at_ms)));
  if (mine && entry.delivery) {
    const tick = h('span', { class: `tick ${entry.delivery}`, dataset: { state: entry.delivery }, title: TICK_NAMES[entry.delivery] || '', 'aria-label': TICK_NAMES[entry.delivery] || '' }, TICKS[entry.delivery] || '');
    tick.addEventListener('mouseenter', () => custody(tick, m.id), { once: true });
    meta.append(tick);
  }
  parts.push(meta);
  const reactions = Object.entries(m.reactions || {});
  if (reactions.length) {
    const counts = new Map();
    for (const [who, emoji] of reactions) {
      if (!counts.has(emoji)) counts.set(emoji, []);
      counts.get(emoji).push(nameOfKey(who));
    }
    parts.push(h('div', { class: 'reactions' }, [...counts].map(([emoji, who]) => h('span', { class: 'reaction', title: who.join(', ') }, `${emoji} ${who.length}`))));
  }
  const el = h('div', { class: `msg ${mine ? 'out' : 'in'}`, dataset: { id: m.id }, tabindex: '0', 'aria-label': `${mine ? 'You' : nameOfKey(m.author)}: ${m.deleted ? 'deleted' : preview(m)}` }, h('div', { class: 'bubble' }, parts));
  if (!m.deleted) el.append(actions(entry));
  return el;
}

function actions(entry) {
  const m = entry.message;
  const bar = h('div', { class: 'actions' });
  bar.append(h('button', { class: 'act-reply', 'aria-label': 'Reply', title: 'Reply', onclick: () => startReply(m) }, '↩'));
  const picker = h('div', { class: 'picker', hidden: true }, REACTIONS.map((emoji) => h('button', { 'aria-label': `React ${emoji}`, onclick: () => react(m, emoji) }, emoji)));
  bar.append(h('button', { class: 'act-react', 'aria-label': 'React', title: 'React', onclick: () => { picker.hidden = !picker.hidden; } }, '☺'), picker);
  if (entry.outgoing) {
    if (!m.attachment) bar.append(h('button', { class: 'act-edit', 'aria-label': 'Edit', title: 'Edit', onclick: () => edit(m) }, '✎'));
    bar.append(h('button', { class: 'act-delete', 'aria-label': 'Delete for everyone', title: 'Delete for everyone', onclick: () => del(m) }, '🗑'));
  }
  return bar;
}

async function custody(tick, id) {
  const info = await call('chats_message_info', { chat: state.current, message: id }).catch(() => null);
  if (!info) return;
  const lines = info.recipients.map((r) => {
    let line = `${nameOfKey(r.peer)}: ${TICK_NAMES[r.state] || r.state}`;
    if (r.held_by.length) {
      const until = Math.max(...r.held_by.map(([, ms]) => ms));
      line += ` — held by ${r.held_by.length} relay${r.held_by.length > 1 ? 's' : ''} until ${day(until).toLowerCase()} ${time(until)}`;
    }
    return line;
  });
  tick.title = lines.join('\n') || tick.title;
}

/** A file's transfer state, in words. */
function fileStatusText(status) {
  if (!status) return '';
  switch (status.state) {
    case 'trying': return status.stored ? 'resuming…' : 'connecting…';
    case 'source_failed': return 'trying another source…';
    case 'progress': return status.total ? `${Math.floor((100 * status.done) / status.total)}%` : bytes(status.done);
    case 'ready': return 'downloaded';
    case 'cached': return 'held by a relay';
    case 'failed': return `failed: ${status.reason}`;
    case 'skipped': return 'not downloaded yet';
    default: return '';
  }
}

function showFileStatus(hash, status) {
  state.files.set(hash, status);
  for (const card of document.querySelectorAll('.file')) {
    if (card.dataset.hash === hash) card.querySelector('.file-progress').textContent = fileStatusText(status);
  }
}

function attachmentView(chat, m) {
  const a = m.attachment;
  const card = h('div', { class: 'file', dataset: { hash: String(a.hash) } });
  if (a.preview && a.preview.length) {
    const url = URL.createObjectURL(new Blob([new Uint8Array(a.preview)], { type: 'image/jpeg' }));
    const img = h('img', { class: 'preview', alt: `Preview of ${a.name}`, src: url });
    img.addEventListener('click', () => {
      img.src = fileUrl(chat.id, m.id, true);
    });
    card.append(img);
  } else if (a.mime.startsWith('video/')) {
    card.append(h('video', { class: 'preview', controls: true, preload: 'none', src: fileUrl(chat.id, m.id, true) }));
  }
  card.append(
    h(
      'div',
      { class: 'file-row' },
      h('span', { class: 'file-icon', 'aria-hidden': 'true' }, '📄'),
      h('div', { class: 'file-info' }, h('div', { class: 'file-name' }, a.name), h('div', { class: 'file-meta' }, `${bytes(a.size)} · ${a.mime} `, h('span', { class: 'file-progress', 'aria-live': 'polite' }, fileStatusText(state.files.get(String(a.hash)))))),
      h('a', { class: 'download', href: fileUrl(chat.id, m.id, false), download: '', 'aria-label': `Download ${a.name}` }, '⬇'),
    ),
  );
  return card;
}

async function loadOlder() {
  state.limit += PAGE;
  $('messages').dataset.older = '1';
  await attempt(loadHistory);
}

function startReply(m) {
  state.replyTo = m.id;
  $('reply-bar').hidden = false;
  clear($('reply-quote')).append(h('b', {}, nameOfKey(m.author)), h('span', {}, preview(m)));
  $('text').focus();
}

async function react(m, emoji) {
  const mine = m.reactions && state.me && m.reactions[state.me.key];
  await attempt(() => call('chats_react', { chat: state.current, message: m.id, emoji: mine === emoji ? '' : emoji }));
  refresh(['history']);
}

async function edit(m) {
  const text = await prompt('Edit message', m.text);
  if (text === null || text === m.text) return;
  await attempt(() => call('chats_edit', { chat: state.current, message: m.id, text }));
  refresh(['history', 'chats']);
}

async function del(m) {
  if (!(await confirm('Delete this message for everyone?'))) return;
  await attempt(() => call('chats_delete', { chat: state.current, message: m.id }));
  refresh(['history', 'chats']);
}
// ---------- composer ----------

let lastTyping = 0;

async function send() {
  const box = $('text');
  const text = box.value;
  if (!text.trim() || !state.current) return;
  const params = { to: state.current, text };
  if (state.replyTo) params.reply_to = state.replyTo;
  // Cleared at once, so what is typed next is the next message; put back
  // if the send fails.
  box.value = '';
  autosize();
  state.replyTo = null;
  $('reply-bar').hidden = true;
  const sent = await attempt(() => call('chats_send', params));
  if (sent) {
    refresh(['history', 'chats']);
  } else if (!box.value) {
    box.value = text;
    autosize();
  }
}

function autosize() {
  const box = $('text');
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight, 160)}px`;
}

async function sendFiles(files) {
  for (const file of files) {
    const sent = await attempt(() => upload(file, { to: state.current }));
    if (sent) refresh(['history', 'chats']);
  }
}
// ---------- events ----------

function onEvent(e) {
  switch (e.type) {
    case 'message':
    case 'message_updated':
    case 'delivery':
      refresh(e.chat === state.current ? ['history', 'chats'] : ['chats']);
      break;
    case 'message_request':
      toast('A message request arrived: see Contacts.');
      refresh(['chats', 'people', 'requests']);
      break;
    case 'group_changed':
    case 'group_joined':
    case 'group_left':
      refresh(['chats', 'people']);
      if (state.panel === 'group' && e.chat === state.groupPanel) showGroupInfo({ id: e.chat }, true);
      break;
    case 'peer_connected':
      state.connected.add(e.peer);
      updateBanner();
      break;
    case 'peer_disconnected':
      state.connected.delete(e.peer);
      updateBanner();
      break;
    case 'presence':
    case 'profile_changed':
      refresh(['people']);
      break;
    case 'typing': {
      if (!state.typing.has(e.chat)) state.typing.set(e.chat, new Map());
      // `expires_ms` is how long it holds, from now.
      state.typing.get(e.chat).set(e.peer, Date.now() + e.expires_ms);
      if (e.chat === state.current) renderHeader();
      setTimeout(() => e.chat === state.current && renderHeader(), e.expires_ms + 50);
      break;
    }
    case 'file':
      if (e.status) showFileStatus(String(e.hash), e.status);
      break;
    default:
      break;
  }
}
// ---------- start ----------

function wire() {
  $('search').addEventListener('input', (e) => {
    state.search = e.target.value;
    renderChatList();
  });
  $('new-chat').addEventListener('click', showAddContact);
  $('new-group').addEventListener('click', showNewGroup);
  $('show-contacts').addEventListener('click', () => showContacts());
  $('show-settings').addEventListener('click', showSettings);
  $('me-button').addEventListener('click', showProfile);
  $('back').addEventListener('click', () => {
    state.current = null;
    $('conversation').hidden = true;
    $('empty').hidden = false;
    document.body.classList.remove('in-chat');
    renderChatList();
  });
  $('conv-info').addEventListener('click', () => {
    const chat = currentChat();
    if (chat && chat.kind.Group) showGroupInfo(chat);
  });
  $('reply-cancel').addEventListener('click', () => {
    state.replyTo = null;
    $('reply-bar').hidden = true;
  });
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });
  const text = $('text');
  text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
    if (e.key === 'Escape' && state.replyTo) $('reply-cancel').click();
  });
  text.addEventListener('input', () => {
    autosize();
    if (state.current && Date.now() - lastTyping > 3000) {
      lastTyping = Date.now();
      call('chats_typing', { chat: state.current }).catch(() => {});
    }
  });
  text.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) {
      e.preventDefault();
      sendFiles(files);
    }
  });
  $('attach').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', (e) => {
    sendFiles([...e.target.files]);
    e.target.value = '';
  });
  const conv = $('conversation');
  conv.addEventListener('dragover', (e) => {
    e.preventDefault();
    conv.classList.add('dragging');
  });
  conv.addEventListener('dragleave', () => conv.classList.remove('dragging'));
  conv.addEventListener('drop', (e) => {
    e.preventDefault();
    conv.classList.remove('dragging');
    sendFiles([...(e.dataTransfer?.files || [])]);
  });
  $('messages').addEventListener('scroll', (e) => {
    if (e.target.scrollTop === 0 && state.entries.length >= state.limit) loadOlder();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !$('dialog').open) {
      if (!$('panel').hidden) closePanel();
    }
    if ((e.ctrlKey || e.metaKey) && e.key === 'k') {
      e.preventDefault();
      $('search').focus();
    }
  });
}

async function start() {
  connect({ toast, attempt, refresh, loadPeople, loadChats, openChat, currentChat, avatar, renderChatList });
  // A bug shows as a message rather than a silently stuck screen.
  window.addEventListener('error', (e) => toast(`Something went wrong: ${e.message}`));
  window.addEventListener('unhandledrejection', (e) => toast(`Something went wrong: ${e.reason && e.reason.message ? e.reason.message : e.reason}`));
  wire();
  try {
    await loadPeople();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      showSignedOut();
      return;
    }
    toast(String(e.message || e));
  }
  await attempt(loadStatus);
  await attempt(loadChats);
  events({
    onEvent,
    onLagged: () => refresh(['people', 'status', 'chats', 'history']),
    onOpen: (open) => {
      if (open) refresh(['status', 'chats', 'history']);
      updateBanner(open);
    },
  });
  document.body.dataset.ready = '1';
}

start();
