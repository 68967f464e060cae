// Building the page. Every string from the network goes in as a text node
// (`textContent`), never as HTML; no attribute that loads or runs anything
// (href, src, on*) is ever set from such a string.

/** h('div', {class: 'x', onclick: f}, 'text', child) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function $(id) {
  return document.getElementById(id);
}

export function time(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function day(ms) {
  const d = new Date(ms);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
}

export function when(ms) {
  const d = new Date(ms);
  if (d.toDateString() === new Date().toDateString()) return time(ms);
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1073741824) return `${(n / 1048576).toFixed(1)} MB`;
  return `${(n / 1073741824).toFixed(1)} GB`;
}

/** Draws a QR code (rows of '1'/'0' modules) on a canvas. */
export function qr(size, modules, scale = 5) {
  const quiet = 4;
  const px = (size + quiet * 2) * scale;
  const canvas = h('canvas', { width: px, height: px, role: 'img', 'aria-label': 'Invite QR code' });
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, px, px);
  ctx.fillStyle = '#000';
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (modules[y * size + x] === '1') ctx.fillRect((x + quiet) * scale, (y + quiet) * scale, scale, scale);
    }
  }
  return canvas;
}

// Dialogs: a question or a text to edit, answered through a promise.
export function dialog(title, body, buttons) {
  const d = $('dialog');
  clear(d).append(h('h2', {}, title), body, h('div', { class: 'dialog-buttons' }, buttons));
  d.showModal();
  return d;
}

export function prompt(title, value) {
  return new Promise((resolve) => {
    const input = h('textarea', { class: 'field', 'aria-label': title, rows: '3' });
    input.value = value || '';
    const d = dialog(title, input, [
      h('button', { onclick: () => { d.close(); resolve(null); } }, 'Cancel'),
      h('button', { class: 'primary', onclick: () => { d.close(); resolve(input.value); } }, 'Save'),
    ]);
    input.focus();
  });
}

export function confirm(question, label = 'Delete') {
  return new Promise((resolve) => {
    const d = dialog(question, h('p', {}, ''), [
      h('button', { onclick: () => { d.close(); resolve(false); } }, 'Cancel'),
      h('button', { class: 'primary danger', onclick: () => { d.close(); resolve(true); } }, label),
    ]);
  });
}
