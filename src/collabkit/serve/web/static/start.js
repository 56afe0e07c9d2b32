'use strict';
// Start here: the onboarding questions one card at a time. The first answer creates the visitor
// (POST /v1/users, answers folded in); each later one is stored (PUT its rating) and the list is
// fetched again (GET .../recommendations, folded in from the stored ratings).
(() => {
  const N_QUESTIONS = 30, N_RECS = 10, ENOUGH = 10;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  let questions = [], at = 0, answered = 0, created = false, busy = false, visitor = newId();

  function newId() {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function show(recs) {
    $('mode').textContent = ck.MODES[recs.mode] || '';
    ck.recList($('recs'), recs);
    $('recs').dataset.mode = recs.mode;
    $('whoami').textContent = created
      ? 'Your answers are saved as user ' + visitor + ': your list is on the For you page.' : '';
  }

  async function load() {
    at = 0; answered = 0; created = false;
    $('card').replaceChildren(ck.el('p', { class: 'empty', text: 'Loading the questions…' }));
    try {
      const [q, recs] = await Promise.all([
        ck.api('/v1/onboarding/questions?n=' + N_QUESTIONS),
        ck.api('/v1/users/' + enc(visitor) + '/recommendations?n=' + N_RECS),
      ]);
      questions = q.questions;
      show(recs);
      await card(false);
    } catch (e) {
      ck.fail(e);
      $('card').replaceChildren(ck.el('p', { class: 'empty', text: 'The questions could not be loaded.' }));
    }
  }

  async function card(focus) {
    if (at >= questions.length) return finished();
    const q = questions[at];
    const name = q.title || 'item ' + q.item;
    $('progress').textContent = 'Question ' + (at + 1) + ' of ' + questions.length + ' · ' + answered
      + ' answered' + (answered >= ENOUGH ? ': enough for a good list, go on if you like.' : '');
    $('card').dataset.item = q.item;
    const heading = ck.el('h3', { id: 'q-title', tabindex: '-1', text: name });
    const meta = ck.el('p', { class: 'meta' });
    $('card').replaceChildren(heading, meta,
      ck.el('p', { text: 'How much did you like it?' }),
      ck.stars('Your rating of ' + name, (n) => answer(q, n)),
      ck.el('div', {}, ck.el('button', {
        type: 'button', class: 'secondary', id: 'skip', text: "Skip / haven't seen it", onclick: skip,
      })));
    if (focus) heading.focus();
    try {
      const s = await ck.api('/v1/items/' + enc(q.item) + '/story');
      const genres = s.metadata.genres ? String(s.metadata.genres).split('|').join(', ') : '';
      meta.textContent = [s.metadata.year, genres].filter(Boolean).join(' · ');
    } catch (e) { /* the card works without year and genres */ }
  }

  function finished() {
    delete $('card').dataset.item;
    $('progress').textContent = answered + ' answered. That was the last question.';
    $('card').replaceChildren(ck.el('p', {}, 'Thank you. ',
      ck.el('a', { href: '/for-you', text: 'See your list on For you' }), '.'));
  }

  async function answer(q, n) {
    if (busy) return;
    busy = true;
    const key = ck.keys.writer();
    try {
      let recs;
      if (!created) {
        try {
          recs = await ck.api('/v1/users', {
            method: 'POST', key, body: { user: visitor, answers: [{ item: q.item, rating: n }], n: N_RECS },
          });
        } catch (e) {
          if (e.status !== 409) throw e;  // created by an earlier try whose answer got lost
        }
        created = true;
        ck.user.set(visitor);
      }
      if (!recs) {
        await ck.api('/v1/users/' + enc(visitor) + '/ratings/' + enc(q.item), { method: 'PUT', key, body: { value: n } });
        recs = await ck.api('/v1/users/' + enc(visitor) + '/recommendations?n=' + N_RECS);
      }
      answered += 1;
      at += 1;
      show(recs);
      ck.status('Saved ' + n + (n === 1 ? ' star' : ' stars') + ' for ' + (q.title || q.item) + '; your list was updated.', 'ok');
      card(true);  // the next card is up at once; its year and genres follow
    } catch (e) {
      ck.askForKey(e);
    } finally {
      busy = false;
    }
  }

  function skip() {
    if (busy || at >= questions.length) return;
    at += 1;
    card(true);
  }

  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName)) return;
    if (at >= questions.length) return;
    if (/^[1-5]$/.test(e.key)) { e.preventDefault(); answer(questions[at], Number(e.key)); }
    else if (e.key === 's' || e.key === 'S') { e.preventDefault(); skip(); }
  });

  $('restart').addEventListener('click', () => {
    visitor = newId();
    ck.user.set('');
    ck.status('');
    load();
  });
  load();
})();
