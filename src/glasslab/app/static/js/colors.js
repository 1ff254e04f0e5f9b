// Colour scales readable for colour-blind users: viridis and cividis (sequential), blue-orange (diverging).
// Anchors are 17 evenly spaced samples of each map; values in between are interpolated linearly in sRGB.

const ANCHORS = {
  viridis: ['440154', '48186a', '472d7b', '424086', '3b528b', '33638d', '2c728e', '26828e', '21918c', '1fa088',
    '28ae80', '3fbc73', '5ec962', '84d44b', 'addc30', 'd8e219', 'fde725'],
  cividis: ['00224e', '002e6a', '1a386f', '32436d', '434e6c', '535a6d', '61656f', '6f7073', '7d7c78', '8c8878',
    '9b9476', 'aba072', 'bcae6c', 'cdbb63', 'dec958', 'f0d846', 'fee838'],
  // negative (blue) .. 0 (near white) .. positive (orange)
  blueorange: ['08306b', '1a4f8f', '2f6aa9', '4a86c0', '6ea3d1', '94bde0', 'b9d4eb', 'dbe8f4', 'f5f5f5', 'fbe3c8',
    'f9cc9a', 'f6ad68', 'ef8c3a', 'dd6d14', 'bd5407', '973f05', '6e2c03'],
};

function parse(hex) {
  return [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16), parseInt(hex.slice(4, 6), 16)];
}

// 256-entry lookup tables [r, g, b] so per-cell colouring of large heatmaps is one array read.
const TABLES = Object.fromEntries(Object.entries(ANCHORS).map(([name, hexes]) => {
  const stops = hexes.map(parse);
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const lo = Math.min(Math.floor(x), stops.length - 2);
    const f = x - lo;
    for (let c = 0; c < 3; c++) table[i * 3 + c] = Math.round(stops[lo][c] * (1 - f) + stops[lo + 1][c] * f);
  }
  return [name, table];
}));

/** Index 0..255 of a value on a scale: sequential maps [lo, hi]; diverging maps [-bound, bound] with 0 mid. */
export function scaleIndex(value, lo, hi, diverging) {
  if (!Number.isFinite(value)) return -1;
  let t;
  if (diverging) {
    const bound = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    t = 0.5 + value / (2 * bound);
  } else {
    t = hi > lo ? (value - lo) / (hi - lo) : 0.5;
  }
  return Math.max(0, Math.min(255, Math.round(t * 255)));
}

export function rgbAt(scale, index) {
  const t = TABLES[scale] || TABLES.viridis;
  if (index < 0) return [221, 221, 221];
  return [t[index * 3], t[index * 3 + 1], t[index * 3 + 2]];
}

export function colour(scale, value, lo, hi, diverging) {
  const [r, g, b] = rgbAt(scale, scaleIndex(value, lo, hi, diverging));
  return `rgb(${r},${g},${b})`;
}

/** Black or white text, whichever reads better on the given background. */
export function inkOn(rgb) {
  const [r, g, b] = rgb;
  return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? '#111' : '#fff';
}

export function table(scale) {
  return TABLES[scale] || TABLES.viridis;
}
