'use strict';
// For you: a returning user's list (GET .../recommendations; rated films left out, each with its
// reason); rating from the list stores the rating (PUT) and fetches the list again.
(() => {
  const N = 10;
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const input = $('user');

  async function show(user) {
    try {
      const recs = await ck.api('/v1/users/' + enc(user) + '/recommendations?n=' + N);
      const unknown = recs.mode === 'average-taste'
        ? 'No ratings are stored for user “' + user + '” yet. Answer a few questions on Start here, or rate below. ' : '';
      $('mode').textContent = unknown + ck.MODES[recs.mode];
      $('recs').dataset.mode = recs.mode;
      ck.recList($('recs'), recs, (r, n) => rate(user, r, n));
    } catch (e) {
      ck.fail(e);
      $('mode').textContent = '';
      $('recs').replaceChildren();
    }
  }

  async function rate(user, r, n) {
    try {
      await ck.api('/v1/users/' + enc(user) + '/ratings/' + enc(r.item), {
        method: 'PUT', key: ck.keys.writer(), body: { value: n },
      });
      ck.status('Saved ' + n + (n === 1 ? ' star' : ' stars') + ' for ' + (r.title || r.item) + '; your list was worked out again.', 'ok');
      await show(user);
      const first = $('recs').querySelector('button');
      if (first) first.focus();
    } catch (e) {
      ck.askForKey(e);
    }
  }

  $('who').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = input.value.trim();
    if (!user) return;
    ck.user.set(user);
    ck.status('');
    show(user);
  });
  input.value = new URLSearchParams(location.search).get('user') || ck.user.get();
  if (input.value) show(input.value);
  else $('mode').textContent = 'Type your user id (or answer the questions on Start here first).';
})();
