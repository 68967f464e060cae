// Who is who, and where the app is: the state every screen reads, the
// names shown for keys and peers, and the navigation token that lets a
// screen still loading give way to a newer one.

import { time, day } from './dom.js';

/** Messages per page of history. */
export const PAGE = 50;

export const state = {
  me: null, // {peer, key, name, profile}
  people: new Map(), // key -> person
  byPeer: new Map(), // PeerId -> person
  chats: [],
  current: null, // chat id
  limit: PAGE,
  entries: [],
  replyTo: null,
  typing: new Map(), // chat -> Map(peer -> expires_ms)
  connected: new Set(),
  search: '',
  panel: null, // which panel is open ('contacts' re-renders on news)
  files: new Map(), // attachment hash -> its latest transfer status
  nav: 0, // bumped by every navigation; a screen still loading gives way to a newer one
};

/** Starts a navigation; `stillOn(token)` stays true until the next one. */
export function navigate() {
  state.nav += 1;
  return state.nav;
}
export function stillOn(token) {
  return token === state.nav;
}

// ---------- names ----------

export function short(peer) {
  return peer ? `…${peer.slice(-8)}` : '?';
}

/** A person's name as shown: contact name, "~Profile name" for strangers, or a short id. */
export function nameOfPerson(p) {
  if (!p) return null;
  if (p.contact && p.name) return p.name;
  const profileName = p.profile && p.profile.name;
  if (profileName) return p.contact ? profileName : `~${profileName}`;
  return short(p.peer);
}

export function nameOfKey(key) {
  if (state.me && key === state.me.key) return 'You';
  const p = state.people.get(key);
  return p ? nameOfPerson(p) : key ? `…${String(key).slice(-8)}` : '?';
}

export function otherKey(chat) {
  const d = chat.kind && chat.kind.Direct;
  if (!d || !state.me) return null;
  return d.a === state.me.key ? d.b : d.a;
}

export function chatTitle(chat) {
  if (chat.name) return chat.name;
  const key = otherKey(chat);
  return key ? nameOfKey(key) : 'Group';
}

export function presenceText(p) {
  if (!p || !p.presence) return '';
  const s = p.presence;
  if (s.state === 'online') return 'online';
  if (s.state === 'offline' && s.at_ms) return `last seen ${day(s.at_ms).toLowerCase()} at ${time(s.at_ms)}`;
  return '';
}

export function preview(m) {
  if (m.deleted) return 'This message was deleted';
  if (m.attachment) return `📎 ${m.attachment.name}${m.text ? ` — ${m.text}` : ''}`;
  return m.text || '';
}
