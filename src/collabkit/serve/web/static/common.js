'use strict';
// Shared by every page: the API client, the keys and small DOM helpers.
// Text from data goes into the DOM with textContent only (el() below), never as markup.
const ck = (() => {
  class ApiError extends Error {
    constructor(status, message, field) { super(message); this.status = status; this.field = field; }
  }

  function explain(status, message) {
    if (status === 503) return 'No model is live yet: an admin promotes one on the Admin page. (' + message + ')';
    if (status === 401) return 'This needs a valid API key: ' + message;
    if (status === 403) return 'This key may not do that: ' + message;
    return message;
  }

  // One call of the JSON API; throws ApiError with the service's message.
  async function api(path, { method = 'GET', body, key } = {}) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (key) headers.authorization = 'Bearer ' + key;
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, 'The service does not answer. Is `collabkit serve` still running?');
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const message = data && data.error ? data.error : 'HTTP ' + res.status;
      throw new ApiError(res.status, explain(res.status, message), data && data.field);
    }
    return data;
  }

  // An element with properties, attributes, listeners and children (strings become text nodes).
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') node.textContent = v;
      else if (k === 'class') node.className = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function status(message, kind = 'info') {
    const s = document.getElementById('status');
    s.textContent = message || '';
    s.dataset.kind = kind;
  }
  const fail = (err) => status(err.message || String(err), 'error');

  // GET a page's data: the parsed JSON, or undefined after the error is shown in the status line.
  async function read(path) {
    try {
      return await api(path);
    } catch (e) {
      fail(e);
      return undefined;
    }
  }

  // Keys: a writer key in this browser (from the address' #key=... or the key form), an admin key
  // for this tab only. Writes use the writer key, else the admin key (an admin may write too).
  const keys = {
    writer: () => localStorage.getItem('collabkit.key') || sessionStorage.getItem('collabkit.admin') || '',
    setWriter: (k) => k ? localStorage.setItem('collabkit.key', k) : localStorage.removeItem('collabkit.key'),
    admin: () => sessionStorage.getItem('collabkit.admin') || '',
    setAdmin: (k) => k ? sessionStorage.setItem('collabkit.admin', k) : sessionStorage.removeItem('collabkit.admin'),
  };
  const fromAddress = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (fromAddress) {
    keys.setWriter(decodeURIComponent(fromAddress[1]));
    history.replaceState(null, '', location.pathname + location.search);  // keep it out of the address bar
  }

  // The user this browser acts as (set by onboarding, or typed on For you).
  const user = {
    get: () => localStorage.getItem('collabkit.user') || '',
    set: (u) => u ? localStorage.setItem('collabkit.user', u) : localStorage.removeItem('collabkit.user'),
  };

  // Five star buttons: click or Enter/Space on one rates; label names what is rated.
  function stars(label, onRate, small = false) {
    const group = el('div', { class: 'stars' + (small ? ' small' : ''), role: 'group', 'aria-label': label });
    for (let n = 1; n <= 5; n++) {
      group.append(el('button', {
        type: 'button', text: '★', 'aria-label': n + (n === 1 ? ' star' : ' stars'),
        title: n + ' of 5', 'data-stars': n, onclick: () => onRate(n),
      }));
    }
    return group;
  }

  // The chance of a rating of love_at or more, from models that give one (else nothing).
  function love(r, loveAt) {
    if (loveAt === null || loveAt === undefined || r.p_love === null || r.p_love === undefined) return null;
    return el('span', { class: 'love', text: Math.round(100 * r.p_love) + '% chance you\'ll love it (' + loveAt + ' stars or more)' });
  }

  // A recommendation list (a /v1 recommendations response): title, reason, the chance of loving
  // it where the model gives one, and (with onRate) stars to rate it from the list.
  function recList(list, recs, onRate) {
    const items = recs.items;
    list.replaceChildren(...items.map((r) => {
      const name = r.title || 'item ' + r.item;
      return el('li', { 'data-item': r.item },
        el('span', { class: 'title', text: name }),
        r.because ? el('span', { class: 'because', text: r.because }) : null,
        love(r, recs.love_at),
        onRate ? stars('Rate ' + name, (n) => onRate(r, n), true) : null);
    }));
    if (!items.length) list.replaceChildren(el('li', { class: 'empty', text: 'Nothing left to recommend.' }));
  }

  const MODES = {
    model: 'Recommended by the live model, which knows your ratings.',
    'fold-in': 'Worked out from your ratings just now (folded in, no retraining).',
    'average-taste': 'No ratings yet: these are the films the average taste would pick.',
  };

  // The writer-key form on Start here and For you.
  function keyForm() {
    const input = document.getElementById('writer-key');
    if (!input) return;  // pages without the writer-key form (Admin has its own)
    const form = input.form;
    input.value = localStorage.getItem('collabkit.key') || '';
    form.addEventListener('submit', (e) => {
      e.preventDefault(); keys.setWriter(input.value.trim()); status('Key saved in this browser.', 'ok');
    });
    document.getElementById('key-forget').addEventListener('click', () => {
      keys.setWriter(''); input.value = ''; status('Key forgotten.', 'ok');
    });
  }
  function askForKey(err) {
    fail(err);
    if (err.status === 401 || err.status === 403) {
      const box = document.getElementById('key-box');
      if (box) { box.open = true; document.getElementById('writer-key').focus(); }
    }
  }
  document.addEventListener('DOMContentLoaded', keyForm);

  const pct = (x) => (x === null || x === undefined ? '–' : (100 * x).toFixed(1) + '%');
  const num = (x, d = 3) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : '–');

  return { ApiError, api, read, el, status, fail, keys, user, stars, recList, MODES, askForKey, pct, num, when };
})();
