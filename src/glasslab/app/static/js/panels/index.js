// The panels in tab order.

import * as predictions from './predictions.js';
import * as attention from './attention.js';
import * as roles from './roles.js';
import * as lens from './lens.js';
import * as dla from './dla.js';
import * as neurons from './neurons.js';
import * as sae from './sae.js';
import * as steering from './steering.js';
import * as ablation from './ablation.js';
import * as patching from './patching.js';
import * as circuit from './circuit.js';
import * as graph from './graph.js';

export const PANEL_ORDER = [
  ['predictions', predictions],
  ['attention', attention],
  ['roles', roles],
  ['lens', lens],
  ['dla', dla],
  ['neurons', neurons],
  ['sae', sae],
  ['steering', steering],
  ['ablation', ablation],
  ['patching', patching],
  ['circuit', circuit],
  ['graph', graph],
];

export const PANELS = Object.fromEntries(PANEL_ORDER);
