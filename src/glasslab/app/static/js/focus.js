// The keyboard focus across a redraw of the panel. Every change rebuilds the panel from scratch, so the
// element that had the focus (a heatmap where Enter just marked a head) is replaced and the focus would fall
// back to the page; the same element of the new drawing (same id, else the same place among its kind) gets
// it back, with a heatmap's keyboard cursor, and the page does not scroll.

function describe(root, el) {
  const kind = el.tagName.toLowerCase() + (el.classList.contains('heatmap') ? '.heatmap' : '');
  return { id: el.id, kind, index: [...root.querySelectorAll(kind)].indexOf(el), cursor: el.cursor?.() ?? null };
}

/** Run `draw()` (which rebuilds `root`), then give the focus back to what had it inside `root`. */
export function keepFocus(root, draw) {
  const had = document.activeElement;
  const where = had && had !== root && root.contains(had) ? describe(root, had) : null;
  draw();
  if (!where || (root.contains(had) && document.activeElement === had)) return;
  const again = where.id ? document.getElementById(where.id) : root.querySelectorAll(where.kind)[where.index];
  if (!again || !root.contains(again)) return;
  again.focus({ preventScroll: true });
  if (where.cursor && again.setCursor) again.setCursor(where.cursor);
}
