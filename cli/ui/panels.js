// The screens beside the conversation: contacts and message requests,
// adding a contact by invite, groups, my profile and privacy, network and
// relays. What they need of the app's core (loading, refreshing, opening a
// chat) is handed over once by connect(), so no module imports another
// that imports it back.

import { call, upload } from './api.js';
import { h, clear, $, when, qr, prompt, confirm } from './dom.js';
import { state, navigate, stillOn, short, nameOfPerson, nameOfKey, otherKey, presenceText, preview } from './names.js';

let app = null;

/** Hands the panels the app's core: toast, attempt, refresh, loadPeople, loadChats, openChat, currentChat, avatar, renderChatList. */
export function connect(core) {
  app = core;
}

export function showPanel(title, ...content) {
  state.panel = null;
  $('empty').hidden = true;
  $('conversation').hidden = true;
  state.current = null;
  const panel = clear($('panel'));
  panel.hidden = false;
  document.body.classList.add('in-chat');
  panel.append(h('header', { class: 'bar' }, h('button', { class: 'back', 'aria-label': 'Back', onclick: closePanel }, '←'), h('h2', {}, title)), h('div', { class: 'panel-body' }, content));
  app.renderChatList();
  return panel;
}

export function closePanel() {
  navigate();
  state.panel = null;
  $('panel').hidden = true;
  $('empty').hidden = false;
  document.body.classList.remove('in-chat');
}

function field(label, input) {
  return h('label', { class: 'field-row' }, h('span', {}, label), input);
}

export async function showAddContact() {
  const token = navigate();
  const invite = h('textarea', { id: 'invite-input', class: 'field', rows: '3', placeholder: 'MC1:…', 'aria-label': 'Their invite' });
  const name = h('input', { id: 'invite-name', class: 'field', placeholder: 'optional', 'aria-label': 'Name for them' });
  const mine = h('div', { class: 'my-invite' }, 'Loading…');
  if (!stillOn(token)) return;
  showPanel(
    'Add a contact',
    h('section', { class: 'card' }, h('h3', {}, 'Their invite'), h('p', { class: 'hint' }, 'Paste the invite they sent you (it starts with MC1:).'), invite, field('Name', name),
      h('button', { id: 'invite-add', class: 'primary', onclick: async () => {
        const c = await app.attempt(() => call('contacts_add_invite', { invite: invite.value.trim(), name: name.value.trim() || null }));
        if (c) {
          app.toast(`Added ${c.name || short(c.peer)}.`);
          app.refresh(['people']);
          showContacts();
        }
      } }, 'Add contact')),
    h('section', { class: 'card' }, h('h3', {}, 'My invite'), h('p', { class: 'hint' }, 'Send this to someone, or let them scan the code.'), mine),
  );
  invite.focus();
  const r = await app.attempt(() => call('ui_invite_qr'));
  if (r) {
    const text = h('textarea', { id: 'my-invite', class: 'field mono', rows: '4', readonly: true, 'aria-label': 'My invite' });
    text.value = r.invite;
    clear(mine).append(text, h('button', { onclick: () => navigator.clipboard?.writeText(r.invite).then(() => app.toast('Copied.')) }, 'Copy'), h('div', { class: 'qr' }, qr(r.size, r.modules)));
  }
}

/** Contacts and message requests; `inPlace` re-renders them only if still on screen. */
export async function showContacts(inPlace = false) {
  const token = inPlace ? state.nav : navigate();
  const list = h('ul', { class: 'list' });
  const requests = h('div', { class: 'requests' });
  // Read first, then swap the screen in one go (no flicker on a refresh).
  const pendingRequests = (await app.attempt(() => call('contacts_requests'))) || [];
  const contacts = await app.attempt(() => call('contacts_list'));
  if (!stillOn(token) || (inPlace && state.panel !== 'contacts')) return;
  showPanel('Contacts', requests, h('button', { class: 'primary', onclick: showAddContact }, 'Add a contact'), list);
  state.panel = 'contacts';
  if (pendingRequests.length) {
    requests.append(h('h3', {}, 'Message requests'), h('p', { class: 'hint' }, 'People who are not in your contacts wrote to you or added you to a group. Nothing of theirs shows until you accept.'));
    const ul = h('ul', { class: 'list' });
    for (const r of pendingRequests) {
      const from = nameOfKey(r.from);
      ul.append(h('li', { class: 'list-item request' },
        h('div', { class: 'grow' },
          h('div', {}, r.group ? `${from} added you to the group ${r.group}` : `${from} wrote ${r.messages.length} message${r.messages.length === 1 ? '' : 's'}`),
          r.messages.length ? h('div', { class: 'hint request-preview' }, preview(r.messages[r.messages.length - 1])) : null,
          h('div', { class: 'hint' }, when(r.first_seen_ms))),
        h('button', { class: 'primary accept-request', onclick: () => app.attempt(async () => { await call('contacts_accept_request', { chat: r.chat }); app.refresh(['chats', 'people']); showContacts(true); }) }, 'Accept'),
        h('button', { onclick: () => app.attempt(async () => { await call('contacts_delete_request', { chat: r.chat }); showContacts(); }) }, 'Delete'),
        h('button', { class: 'danger', onclick: () => app.attempt(async () => { await call('contacts_delete_request', { chat: r.chat, block: true }); showContacts(); }) }, 'Block')));
    }
    requests.append(ul);
  }
  if (!contacts) return;
  for (const c of contacts) {
    const person = state.byPeer.get(c.peer);
    const name = c.name || nameOfPerson(person) || short(c.peer);
    list.append(
      h('li', { class: 'list-item' }, app.avatar(c.peer, name, person?.profile), h('div', { class: 'grow' }, h('div', {}, name), h('div', { class: 'hint contact-status' }, c.blocked ? 'blocked' : [person?.profile?.status, presenceText(person)].filter(Boolean).join(' · ') || short(c.peer))),
        h('button', { class: 'message-contact', onclick: () => app.attempt(async () => {
          const chatId = await directChat(c.peer);
          if (chatId) app.openChat(chatId);
        }) }, 'Message'),
        h('button', { onclick: () => app.attempt(async () => { await call('contacts_block', { peer: c.peer, blocked: !c.blocked }); showContacts(); }) }, c.blocked ? 'Unblock' : 'Block'),
        h('button', { class: 'danger', onclick: () => app.attempt(async () => { await call('contacts_remove', { peer: c.peer }); app.refresh(['people']); showContacts(); }) }, 'Remove')),
    );
  }
  if (!contacts.length) list.append(h('li', { class: 'hint' }, 'No contacts yet.'));
}

/** The direct chat with a peer, if one exists (a first message creates it). */
async function directChat(peer) {
  const person = state.byPeer.get(peer);
  const chat = state.chats.find((c) => person && otherKey(c) === person.key);
  if (chat) return chat.id;
  const text = await prompt('First message', 'Hi!');
  if (!text) return null;
  const sent = await call('chats_send', { to: peer, text });
  await app.loadChats();
  return sent.chat;
}

export async function showNewGroup() {
  const token = navigate();
  const name = h('input', { class: 'field', 'aria-label': 'Group name', placeholder: 'Group name' });
  const contacts = (await app.attempt(() => call('contacts_list'))) || [];
  const boxes = contacts.map((c) => ({ c, box: h('input', { type: 'checkbox', 'aria-label': c.name || c.peer }) }));
  if (!stillOn(token)) return;
  showPanel('New group', field('Name', name), h('h3', {}, 'Members'),
    h('ul', { class: 'list' }, boxes.map(({ c, box }) => h('li', {}, h('label', { class: 'list-item' }, box, c.name || short(c.peer))))),
    h('button', { class: 'primary', onclick: async () => {
      const members = boxes.filter((b) => b.box.checked).map((b) => b.c.peer);
      const r = await app.attempt(() => call('groups_create', { name: name.value.trim(), members }));
      if (r) { await app.loadChats(); app.openChat(r.chat); }
    } }, 'Create group'));
  name.focus();
}

/** The group's details; `inPlace` re-renders them in place only if they are still on screen. */
export async function showGroupInfo(chat, inPlace = false) {
  const token = inPlace ? state.nav : navigate();
  const info = await app.attempt(() => call('groups_info', { chat: chat.id }));
  if (!info) return;
  const myRole = info.members.find((m) => m.key === state.me.key)?.role;
  const admin = myRole === 'admin' || myRole === 'creator' || info.creator === state.me.key;
  const rename = h('input', { class: 'field', 'aria-label': 'Group name' });
  rename.value = info.name;
  const history = h('input', { type: 'checkbox', 'aria-label': 'New members see the history' });
  history.checked = !!(info.settings && (info.settings.history_for_new_members ?? info.settings.history));
  const contacts = (await app.attempt(() => call('contacts_list'))) || [];
  const memberKeys = new Set(info.members.map((m) => m.key));
  const addable = contacts.filter((c) => !memberKeys.has(state.byPeer.get(c.peer)?.key));
  const pick = h('select', { class: 'field', 'aria-label': 'Contact to add' }, addable.map((c) => h('option', { value: c.peer }, c.name || short(c.peer))));
  const op = (method, params) => app.attempt(async () => { await call(method, { chat: chat.id, ...params }); await app.loadChats(); showGroupInfo(chat, true); });
  if (!stillOn(token) || (inPlace && (state.panel !== 'group' || state.groupPanel !== chat.id))) return;
  state.groupPanel = chat.id;
  showPanel(`# ${info.name}`,
    admin ? h('section', { class: 'card' }, field('Name', rename), h('button', { onclick: () => op('groups_rename', { name: rename.value.trim() }) }, 'Rename'),
      h('label', { class: 'check-row' }, history, 'New members see the history'), h('button', { onclick: () => op('groups_set_history_for_new_members', { on: history.checked }) }, 'Save setting')) : null,
    h('h3', {}, `${info.members.length} members`),
    h('ul', { class: 'list' }, info.members.map((m) => {
      const person = state.people.get(m.key);
      const peer = person?.peer;
      return h('li', { class: 'list-item member', dataset: { key: m.key } }, h('div', { class: 'grow' }, nameOfKey(m.key), h('span', { class: 'hint' }, ` ${m.role}`)),
        admin && peer && m.key !== state.me.key ? [
          h('button', { onclick: () => op('groups_set_role', { peer, role: m.role === 'admin' ? 'member' : 'admin' }) }, m.role === 'admin' ? 'Demote' : 'Make admin'),
          h('button', { class: 'danger remove-member', onclick: () => op('groups_remove_member', { peer }) }, 'Remove'),
        ] : null);
    })),
    admin && addable.length ? h('section', { class: 'card' }, pick, h('button', { onclick: () => op('groups_add_member', { peer: pick.value }) }, 'Add member')) : null,
    h('button', { class: 'danger', onclick: async () => { if (await confirm('Leave this group?', 'Leave')) { await op('groups_leave', {}); closePanel(); } } }, 'Leave group'),
  );
  state.panel = 'group';
}

export async function showProfile() {
  const token = navigate();
  const mine = (await app.attempt(() => call('profiles_get', {}))) || { profile: {} };
  const p = mine.profile || {};
  const name = h('input', { id: 'profile-name', class: 'field', 'aria-label': 'Name' });
  name.value = p.name || '';
  const status = h('input', { id: 'profile-status', class: 'field', 'aria-label': 'Status' });
  status.value = p.status || '';
  const picture = h('input', { id: 'profile-picture', type: 'file', accept: 'image/*', 'aria-label': 'Profile picture' });
  const privacy = h('select', { class: 'field', 'aria-label': 'Who sees my last seen' }, ['everyone', 'contacts', 'nobody'].map((v) => h('option', { value: v }, v)));
  const current = await app.attempt(() => call('profiles_last_seen_privacy'));
  if (current) privacy.value = current.last_seen;
  if (!stillOn(token)) return;
  showPanel('My profile',
    h('div', { class: 'profile-head' }, app.avatar(state.me.peer, p.name, p)),
    field('Name', name), field('Status', status), field('Picture', picture),
    h('button', { id: 'profile-save', class: 'primary', onclick: async () => {
      const ok = await app.attempt(async () => {
        await call('profiles_set', { name: name.value, status: status.value });
        if (picture.files.length) await upload(picture.files[0], { avatar: true });
        return true;
      });
      if (ok) { app.toast('Saved.'); app.refresh(['people']); }
    } }, 'Save'),
    h('h3', {}, 'Privacy'), field('Last seen and online', privacy),
    h('button', { onclick: () => app.attempt(async () => { await call('profiles_set_last_seen_privacy', { last_seen: privacy.value }); app.toast('Saved.'); }) }, 'Save privacy'),
    h('p', { class: 'hint' }, `Your PeerId: ${state.me.peer}`),
  );
}

export async function showSettings() {
  const token = navigate();
  const status = await app.attempt(() => call('network_status'));
  const invite = await app.attempt(() => call('contacts_invite'));
  if (!status) return;
  if (!stillOn(token)) return;
  showPanel('Network and relays',
    h('section', { class: 'card' }, h('h3', {}, 'This device'), h('p', {}, `${status.connected.length} peer(s) connected · ${status.outbox} message(s) waiting to go out`),
      h('ul', { class: 'list mono' }, status.listen_addrs.map((a) => h('li', {}, a)))),
    h('section', { class: 'card' }, h('h3', {}, 'Relays holding my mail'),
      invite && invite.relays.length ? h('ul', { class: 'list mono' }, invite.relays.map((r) => {
        const relayPeer = String(r).split('/p2p/').pop();
        return h('li', {}, `${state.connected.has(relayPeer) ? '● reachable' : '○ not reachable'} — ${r}`);
      })) : h('p', { class: 'hint' }, 'No relay set: mail waits until you and your contact are online together. Add one in config.toml (relays = […]).')),
  );
}
