/**
 * Synthetic but realistic demo data: a catalog, users and a behaviour stream, fully determined by a
 * seed. Every algorithm's offline quality is measured on it and the demo's recommendations come from
 * it, so it has the structure real shops have and models can learn:
 *
 * - latent tastes: users and items live in a 12-dimensional space; every category has a centroid
 *   there, so categories line up with taste, and an item's vector sits near its category's centroid;
 * - power-law item popularity (Zipf over a random rank) and power-law user activity (Pareto);
 * - sessions over a window (90 days by default) ending at a reference time derived from the seed,
 *   with a daily rhythm; inside a session the user browses items picked by a mixture of taste
 *   (softmax of affinity), popularity, similarity to the item just seen and the session's current
 *   category, and walks the funnel view → click → add_to_cart → purchase with falling probability;
 *   ratings (1–5, correlated with affinity) follow some purchases and dislikes hit low-affinity items;
 * - items arrive over time (`created_at`), about 5 % are withdrawn (`available: false`) at some point
 *   inside the window and get no events after that; price sensitivity makes expensive items convert
 *   less for bargain hunters.
 *
 * Pure: no I/O, no clock. The fast path (`generateInteractions`) and the object path
 * (`generateDemoData().events()`) run the same cursor, so they produce the same events in the same
 * (timestamp) order.
 */
import { Rng, mixSeed } from '../algorithms/random.ts';
import { CairnError, type FieldIssue } from '../errors/errors.ts';

/** Options of the generator. All counts are exact. */
export interface DemoDataOptions {
  users: number;
  items: number;
  /** Number of events produced, exactly. */
  events: number;
  seed: number;
  /** Number of categories (default 20); the first 24 have real names, further ones are numbered. */
  categories?: number;
  /** Length of the event window in days (default 90). */
  days?: number;
  /** End of the event window, epoch ms. Default: a fixed day in 2024 derived from the seed. */
  referenceTime?: number;
}

/** An item in the wire format of `POST /v1/items`. */
export interface DemoItem {
  id: string;
  categories: string[];
  attributes: { title: string; price: number; brand: string };
  available: boolean;
  /** Epoch ms. */
  created_at: number;
}

/** A user in the wire format of `PUT /v1/users/{id}`. */
export interface DemoUser {
  id: string;
  attributes: { country: string; age_band: string };
  segments: string[];
}

/** An event in the wire format of `POST /v1/events`. `value` is present for ratings only. */
export interface DemoEvent {
  event_id: string;
  user_id: string;
  item_id: string;
  type: string;
  value?: number;
  /** Epoch ms. */
  timestamp: number;
}

export interface DemoData {
  items: DemoItem[];
  users: DemoUser[];
  /** Start of the event window (epoch ms, inclusive). */
  startTime: number;
  /** End of the event window (epoch ms, inclusive); every event timestamp is ≤ this. */
  endTime: number;
  /** A fresh pass over the events, in non-decreasing timestamp order; each call replays the same stream. */
  events(): Generator<DemoEvent>;
}

/** Events as flat typed arrays (dense indices into the `users`/`items` lists), for benchmarks. */
export interface DemoInteractions {
  userIdx: Int32Array;
  itemIdx: Int32Array;
  /** view 1, click 2, add_to_cart 4, purchase 8, rating = its value, dislike 0. */
  weights: Float32Array;
  /** Epoch ms, non-decreasing. */
  timestamps: Float64Array;
  /** Index into `typeNames`. */
  types: Uint8Array;
  typeNames: string[];
  users: number;
  items: number;
}

/** Event types in the order of the `types` codes of {@link DemoInteractions}. */
export const DEMO_EVENT_TYPES = ['view', 'click', 'add_to_cart', 'purchase', 'rating', 'dislike'] as const;
const VIEW = 0;
const CLICK = 1;
const CART = 2;
const PURCHASE = 3;
const RATING = 4;
const DISLIKE = 5;
/** Training weights of the demo's event types, matching the default `events.types` config. */
const TYPE_WEIGHT = [1, 2, 4, 8, 1, 0];

/** Stable id of the user at dense index `u`. */
export function demoUserId(u: number): string {
  return `u${u + 1}`;
}

/** Stable id of the item at dense index `i`. */
export function demoItemId(i: number): string {
  return `i${i + 1}`;
}

// ---------------------------------------------------------------------------------------------
// Tunables. They were chosen by looking at the generated data (taste concentration, funnel rates,
// popularity tail) and at how far item-kNN beats popularity on it; see demo-data.test.ts.

const DIM = 12;
const DAY = 86_400_000;
/** Item vector = category centroid + this much per-dimension noise (within-category taste spread). */
const ITEM_NOISE = 0.8;
/** User vector noise on top of the favourite categories' centroids. */
const USER_NOISE = 0.5;
/** Zipf exponent of item popularity over a random rank. */
const ZIPF_S = 0.8;
/**
 * Popularity is tempered inside a category: with a global Zipf the global bestseller would otherwise
 * take most of its category's traffic and a single item several per cent of all events.
 */
const CATEGORY_POP_EXP = 0.9;
/** Pareto tail index of user activity (smaller: heavier tail). */
const ACTIVITY_ALPHA = 1.5;
/** Cap of one user's activity relative to the Pareto minimum, so no single user dominates a small data set. */
const MAX_ACTIVITY = 80;
/** Softmax inverse temperature of the session's category choice. */
const BETA_CATEGORY = 3.5;
/** Softmax inverse temperature of the item choice among candidates. */
const BETA_ITEM = 2.5;
/** Weight of similarity to the item just seen in the next item's choice (item-to-item structure). */
const LAMBDA_SIMILAR = 1.0;
const CANDIDATES = 8;
const P_REVISIT = 0.1;
const P_POPULAR = 0.08;
const P_SWITCH_CATEGORY = 0.15;
const MEAN_SESSION_EVENTS = 7;
const MAX_SESSION_EVENTS = 80;
const HISTORY = 6;
const UNAVAILABLE_SHARE = 0.05;
const NEW_ITEM_SHARE = 0.25;
const NEW_USER_SHARE = 0.3;

interface CategorySpec {
  name: string;
  /** Median price. */
  price: number;
  /** Log-normal sigma of the price. */
  spread: number;
  nouns: string[];
}

const CATEGORY_SPECS: CategorySpec[] = [
  {
    name: 'Books',
    price: 14,
    spread: 0.45,
    nouns: ['Novel', 'Cookbook', 'Biography', 'Thriller', 'Atlas', 'Poetry Collection', 'Field Guide'],
  },
  {
    name: 'Electronics',
    price: 120,
    spread: 0.9,
    nouns: ['Headphones', 'Speaker', 'Tablet', 'Camera', 'Smartwatch', 'Charger', 'E-Reader'],
  },
  {
    name: 'Computers',
    price: 280,
    spread: 1.1,
    nouns: ['Laptop', 'Keyboard', 'Mouse', 'Monitor', 'SSD', 'Router', 'Webcam'],
  },
  {
    name: 'Video Games',
    price: 45,
    spread: 0.5,
    nouns: ['RPG', 'Racing Game', 'Puzzle Game', 'Shooter', 'Controller', 'Strategy Game'],
  },
  { name: 'Music', price: 18, spread: 0.5, nouns: ['Vinyl', 'CD', 'Box Set', 'Songbook', 'Live Album'] },
  {
    name: 'Movies & TV',
    price: 16,
    spread: 0.5,
    nouns: ['Blu-ray', 'DVD', 'Series Box', 'Documentary', '4K Edition'],
  },
  {
    name: 'Home & Kitchen',
    price: 35,
    spread: 0.8,
    nouns: ['Frying Pan', 'Knife Set', 'Blender', 'Kettle', 'Coffee Maker', 'Towel Set', 'Lamp'],
  },
  {
    name: 'Garden & Outdoor',
    price: 45,
    spread: 0.8,
    nouns: ['Hose', 'Planter', 'Grill', 'Lawn Chair', 'Pruner', 'Bird Feeder'],
  },
  {
    name: 'Sports',
    price: 50,
    spread: 0.8,
    nouns: ['Yoga Mat', 'Running Shoes', 'Dumbbells', 'Tennis Racket', 'Bike Helmet', 'Water Bottle'],
  },
  {
    name: 'Toys',
    price: 25,
    spread: 0.7,
    nouns: ['Puzzle', 'Building Set', 'Plush Bear', 'Board Game', 'Toy Car', 'Doll House'],
  },
  {
    name: 'Beauty',
    price: 20,
    spread: 0.6,
    nouns: ['Lipstick', 'Face Cream', 'Shampoo', 'Perfume', 'Nail Polish', 'Serum'],
  },
  {
    name: 'Health',
    price: 18,
    spread: 0.6,
    nouns: ['Vitamins', 'Thermometer', 'Massage Gun', 'First Aid Kit', 'Protein Powder'],
  },
  {
    name: 'Clothing',
    price: 40,
    spread: 0.6,
    nouns: ['T-Shirt', 'Jeans', 'Hoodie', 'Dress', 'Jacket', 'Scarf', 'Sweater'],
  },
  {
    name: 'Shoes',
    price: 75,
    spread: 0.5,
    nouns: ['Sneakers', 'Boots', 'Sandals', 'Loafers', 'Trail Runners'],
  },
  { name: 'Jewelry', price: 90, spread: 1.0, nouns: ['Necklace', 'Ring', 'Bracelet', 'Earrings', 'Watch'] },
  {
    name: 'Pet Supplies',
    price: 22,
    spread: 0.7,
    nouns: ['Dog Food', 'Cat Tree', 'Leash', 'Pet Bed', 'Aquarium', 'Chew Toy'],
  },
  {
    name: 'Baby',
    price: 28,
    spread: 0.7,
    nouns: ['Stroller', 'Diapers', 'Baby Monitor', 'Onesie', 'Car Seat', 'Teether'],
  },
  {
    name: 'Grocery',
    price: 7,
    spread: 0.6,
    nouns: ['Coffee Beans', 'Olive Oil', 'Green Tea', 'Chocolate', 'Pasta', 'Honey'],
  },
  {
    name: 'Office',
    price: 15,
    spread: 0.8,
    nouns: ['Notebook', 'Pen Set', 'Desk Organizer', 'Stapler', 'Planner', 'Desk Chair'],
  },
  {
    name: 'Automotive',
    price: 40,
    spread: 0.9,
    nouns: ['Dash Cam', 'Car Charger', 'Floor Mats', 'Tire Inflator', 'Wax Kit'],
  },
  {
    name: 'Tools',
    price: 55,
    spread: 0.9,
    nouns: ['Drill', 'Screwdriver Set', 'Tape Measure', 'Saw', 'Tool Box', 'Level'],
  },
  {
    name: 'Furniture',
    price: 180,
    spread: 0.8,
    nouns: ['Sofa', 'Bookshelf', 'Coffee Table', 'Bed Frame', 'Dresser', 'Armchair'],
  },
  {
    name: 'Arts & Crafts',
    price: 15,
    spread: 0.7,
    nouns: ['Paint Set', 'Sketchbook', 'Yarn', 'Brush Set', 'Clay Kit'],
  },
  {
    name: 'Travel',
    price: 70,
    spread: 0.8,
    nouns: ['Suitcase', 'Backpack', 'Neck Pillow', 'Packing Cubes', 'Travel Adapter'],
  },
];
const GENERIC_NOUNS = ['Product', 'Kit', 'Set', 'Bundle', 'Pack'];
const ADJECTIVES = [
  'Classic',
  'Essential',
  'Premium',
  'Compact',
  'Deluxe',
  'Eco',
  'Smart',
  'Ultra',
  'Vintage',
  'Modern',
  'Everyday',
  'Pro',
  'Urban',
  'Nordic',
  'Cozy',
  'Bold',
  'Pure',
  'Rapid',
  'Silent',
  'Golden',
];
const SERIES = ['Mini', 'Max', 'Lite', 'Plus', 'II', 'III', 'XL', 'Go', 'Air', 'One'];
const BRAND_HEADS = [
  'Ar',
  'Bel',
  'Cor',
  'Dex',
  'El',
  'Fen',
  'Gal',
  'Hal',
  'Iro',
  'Jun',
  'Kel',
  'Lum',
  'Mar',
  'Nor',
  'Ox',
  'Pra',
  'Qui',
  'Ros',
  'Sol',
  'Tor',
  'Ul',
  'Vex',
  'Wyn',
  'Zen',
  'Bri',
  'Cal',
  'Dun',
  'Fal',
  'Hex',
  'Mon',
];
const BRAND_TAILS = [
  'a',
  'o',
  'ix',
  'on',
  'ia',
  'us',
  'ex',
  'ar',
  'ine',
  'wick',
  'ford',
  'tech',
  'works',
  'ly',
  'io',
  'era',
];
const COUNTRIES = ['US', 'GB', 'DE', 'FR', 'ES', 'IT', 'NL', 'PL', 'SE', 'CA', 'BR', 'IN', 'JP', 'AU'];
const COUNTRY_WEIGHTS = [30, 10, 12, 9, 6, 6, 4, 4, 2, 5, 5, 4, 2, 1];
const AGE_BANDS = ['18-24', '25-34', '35-44', '45-54', '55-64', '65+'];
const AGE_WEIGHTS = [12, 27, 23, 17, 12, 9];

// ---------------------------------------------------------------------------------------------
// Sampling helpers on top of the shared seeded generator.

function pickWeighted(rng: Rng, weights: ArrayLike<number>, total: number): number {
  let r = rng.float() * total;
  const n = weights.length;
  for (let i = 0; i < n; i++) {
    r -= weights[i];
    if (r < 0) return i;
  }
  return n - 1;
}

function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

/** Walker/Vose alias table: O(1) draws from a fixed discrete distribution over `values`. */
class AliasTable {
  private readonly prob: Float64Array;
  private readonly alias: Int32Array;
  readonly values: Int32Array;

  constructor(values: Int32Array, weights: Float64Array) {
    const n = values.length;
    this.values = values;
    this.prob = new Float64Array(n);
    this.alias = new Int32Array(n);
    if (n === 0) return;
    const total = sum(weights);
    const scaled = new Float64Array(n);
    const small = new Int32Array(n);
    const large = new Int32Array(n);
    let ns = 0;
    let nl = 0;
    for (let i = 0; i < n; i++) {
      scaled[i] = (weights[i] * n) / total;
      if (scaled[i] < 1) small[ns++] = i;
      else large[nl++] = i;
    }
    while (ns > 0 && nl > 0) {
      const s = small[--ns];
      const l = large[--nl];
      this.prob[s] = scaled[s];
      this.alias[s] = l;
      scaled[l] = scaled[l] + scaled[s] - 1;
      if (scaled[l] < 1) small[ns++] = l;
      else large[nl++] = l;
    }
    // Leftovers are 1 up to rounding.
    while (nl > 0) this.prob[large[--nl]] = 1;
    while (ns > 0) this.prob[small[--ns]] = 1;
  }

  get size(): number {
    return this.values.length;
  }

  /** A random position in `values`. */
  slot(rng: Rng): number {
    const n = this.values.length;
    const x = rng.float() * n;
    const k = Math.min(n - 1, Math.floor(x));
    return x - k < this.prob[k] ? k : this.alias[k];
  }

  draw(rng: Rng): number {
    return this.values[this.slot(rng)];
  }
}

// ---------------------------------------------------------------------------------------------
// The world: everything except the event stream, fixed by the seed.

interface World {
  seed: number;
  nUsers: number;
  nItems: number;
  nEvents: number;
  nCategories: number;
  categoryNames: string[];
  startTime: number;
  endTime: number;
  /** Category centroids, row-major nCategories × DIM. */
  centroids: Float32Array;
  /** Demand weight of each category (some categories are simply bigger). */
  categoryDemand: Float64Array;
  /** Item vectors, nItems × DIM. */
  itemVec: Float32Array;
  itemCategory: Int32Array;
  /** Second category or -1. */
  itemCategory2: Int32Array;
  itemPopularity: Float64Array;
  /** log(price / category median) / spread: a z-score of how expensive the item is in its category. */
  itemPriceZ: Float64Array;
  itemPrice: Float64Array;
  itemBrand: string[];
  itemTitle: string[];
  itemCreated: Float64Array;
  /** Time from which the item gets no events; Infinity for available items. */
  itemWithdrawn: Float64Array;
  /** An item that exists and is available during the whole window. */
  anchorItem: number;
  /** Per category, popularity sampler over slots `categoryOffset[k] ..` of the packed arrays. */
  categoryAlias: AliasTable[];
  /**
   * Category members packed contiguously (an item in two categories appears twice), with copies of
   * their vectors and lifetimes: a session mostly browses one category, so its candidate scoring
   * stays in a few cache-resident kilobytes instead of striding over the whole catalog.
   */
  categoryOffset: Int32Array;
  packedItem: Int32Array;
  packedVec: Float32Array;
  packedCreated: Float64Array;
  packedWithdrawn: Float64Array;
  globalAlias: AliasTable;
  userVec: Float32Array;
  /**
   * Per user, cumulative category-choice weights (nUsers × nCategories): demand × exp(β·affinity to
   * the centroid). Precomputed because every session start and category switch draws from it.
   */
  userCategoryCum: Float32Array;
  userCountry: Uint8Array;
  userAge: Uint8Array;
  userPriceSensitivity: Float64Array;
  userConversion: Float64Array;
  userJoined: Float64Array;
  userEvents: Int32Array;
  userSessions: Int32Array;
  /** Sessions in start order. */
  sessionUser: Int32Array;
  sessionLength: Int32Array;
  sessionStart: Float64Array;
}

function validate(o: DemoDataOptions): void {
  const issues: FieldIssue[] = [];
  const count = (name: string, v: unknown, min: number): void => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      issues.push({ field: name, message: `must be an integer ≥ ${min}` });
    }
  };
  count('users', o.users, 1);
  count('items', o.items, 1);
  count('events', o.events, 0);
  if (typeof o.seed !== 'number' || !Number.isSafeInteger(o.seed)) {
    issues.push({ field: 'seed', message: 'must be an integer' });
  }
  if (o.categories !== undefined) count('categories', o.categories, 1);
  if (o.days !== undefined && !(typeof o.days === 'number' && o.days > 0 && o.days <= 3650)) {
    issues.push({ field: 'days', message: 'must be a number in (0, 3650]' });
  }
  if (o.referenceTime !== undefined && !Number.isFinite(o.referenceTime)) {
    issues.push({ field: 'referenceTime', message: 'must be a finite epoch ms' });
  }
  if (issues.length > 0) throw CairnError.validation(issues, 'invalid demo data options');
}

function brandName(rng: Rng, used: Set<string>): string {
  for (let attempt = 0; ; attempt++) {
    const head = BRAND_HEADS[rng.int(BRAND_HEADS.length)];
    const tail = BRAND_TAILS[rng.int(BRAND_TAILS.length)];
    // Past the syllable combinations, a number keeps names unique.
    const name = attempt < 20 ? head + tail : `${head}${tail} ${used.size}`;
    if (!used.has(name)) {
      used.add(name);
      return name;
    }
  }
}

function roundPrice(p: number): number {
  if (p < 10) return Math.max(0.49, Math.round(p * 100) / 100);
  // Shop prices end in .99 above ten.
  return Math.round(p) - 0.01;
}

function buildWorld(o: DemoDataOptions): World {
  validate(o);
  const rng = new Rng(mixSeed(o.seed, 0));
  const nUsers = o.users;
  const nItems = o.items;
  const nEvents = o.events;
  const nCategories = o.categories ?? 20;
  const days = o.days ?? 90;
  // A fixed day in 2024 picked by the seed: deterministic and different across seeds.
  const endTime =
    o.referenceTime ?? Date.UTC(2024, 0, 1) + (mixSeed(o.seed, 99) % 300) * DAY + 18 * 3_600_000;
  const startTime = endTime - Math.round(days * DAY);

  // Categories.
  const specs: CategorySpec[] = [];
  for (let k = 0; k < nCategories; k++) {
    specs.push(
      CATEGORY_SPECS[k] ?? { name: `Category ${k + 1}`, price: 30, spread: 0.7, nouns: GENERIC_NOUNS },
    );
  }
  const centroids = new Float32Array(nCategories * DIM);
  for (let j = 0; j < centroids.length; j++) centroids[j] = rng.normal();
  const categoryDemand = new Float64Array(nCategories);
  const categoryShare = new Float64Array(nCategories);
  for (let k = 0; k < nCategories; k++) {
    // Bigger categories draw more demand, but not proportionally (some small niches are busy).
    categoryShare[k] = Math.exp(0.5 * rng.normal());
    categoryDemand[k] = Math.sqrt(categoryShare[k]) * Math.exp(0.3 * rng.normal());
  }
  const shareTotal = sum(categoryShare);

  // Items: category, taste vector, popularity rank.
  const itemCategory = new Int32Array(nItems);
  const itemCategory2 = new Int32Array(nItems).fill(-1);
  const itemVec = new Float32Array(nItems * DIM);
  const rank = new Int32Array(nItems);
  for (let i = 0; i < nItems; i++) rank[i] = i;
  for (let i = nItems - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = rank[i];
    rank[i] = rank[j];
    rank[j] = t;
  }
  const itemPopularity = new Float64Array(nItems);
  const itemPriceZ = new Float64Array(nItems);
  const itemPrice = new Float64Array(nItems);
  const catCount = new Int32Array(nCategories);
  const catTop = new Int32Array(nCategories).fill(-1);
  for (let i = 0; i < nItems; i++) {
    const k = pickWeighted(rng, categoryShare, shareTotal);
    itemCategory[i] = k;
    catCount[k]++;
    if (nCategories > 1 && rng.float() < 0.12) {
      const k2 = (k + 1 + rng.int(nCategories - 1)) % nCategories;
      itemCategory2[i] = k2;
    }
    for (let d = 0; d < DIM; d++) itemVec[i * DIM + d] = centroids[k * DIM + d] + ITEM_NOISE * rng.normal();
    itemPopularity[i] = Math.pow(rank[i] + 1, -ZIPF_S);
    if (catTop[k] < 0 || rank[i] < rank[catTop[k]]) catTop[k] = i;
    const z = rng.normal();
    itemPriceZ[i] = z;
    itemPrice[i] = roundPrice(specs[k].price * Math.exp(specs[k].spread * z));
  }
  let anchorItem = 0;
  for (let i = 0; i < nItems; i++) if (rank[i] === 0) anchorItem = i;

  // Brands (Zipf within a category) and titles.
  const usedBrands = new Set<string>();
  const categoryBrands: string[][] = specs.map((_, k) => {
    const n = Math.max(2, Math.min(40, Math.ceil(Math.sqrt(catCount[k] + 1) * 1.5)));
    return Array.from({ length: n }, () => brandName(rng, usedBrands));
  });
  const itemBrand: string[] = new Array<string>(nItems);
  const itemTitle: string[] = new Array<string>(nItems);
  for (let i = 0; i < nItems; i++) {
    const spec = specs[itemCategory[i]];
    const brands = categoryBrands[itemCategory[i]];
    const b = Math.min(brands.length - 1, Math.floor(Math.pow(rng.float(), 2) * brands.length));
    const brand = brands[b];
    const adjective = ADJECTIVES[rng.int(ADJECTIVES.length)];
    const noun = spec.nouns[rng.int(spec.nouns.length)];
    const series = rng.float() < 0.4 ? ` ${SERIES[rng.int(SERIES.length)]}` : '';
    itemBrand[i] = brand;
    itemTitle[i] = `${brand} ${adjective} ${noun}${series}`;
  }

  // Arrival and withdrawal. The most popular item of each category is old and stays available so
  // every category always has something to browse.
  const isAnchor = new Uint8Array(nItems);
  for (let k = 0; k < nCategories; k++) if (catTop[k] >= 0) isAnchor[catTop[k]] = 1;
  isAnchor[anchorItem] = 1;
  const windowMs = endTime - startTime;
  const itemCreated = new Float64Array(nItems);
  for (let i = 0; i < nItems; i++) {
    if (!isAnchor[i] && rng.float() < NEW_ITEM_SHARE) {
      itemCreated[i] = Math.floor(startTime + rng.float() * windowMs * 0.97);
    } else {
      itemCreated[i] = Math.floor(startTime - rng.float() * 730 * DAY);
    }
  }
  const itemWithdrawn = new Float64Array(nItems).fill(Infinity);
  const nonAnchors: number[] = [];
  for (let i = 0; i < nItems; i++) if (!isAnchor[i]) nonAnchors.push(i);
  const nUnavailable = Math.min(nonAnchors.length, Math.round(nItems * UNAVAILABLE_SHARE));
  for (let n = 0; n < nUnavailable; n++) {
    const j = n + rng.int(nonAnchors.length - n);
    const i = nonAnchors[j];
    nonAnchors[j] = nonAnchors[n];
    nonAnchors[n] = i;
    const from = Math.max(itemCreated[i], startTime);
    itemWithdrawn[i] = Math.floor(from + rng.float() * (endTime - from));
  }

  // Popularity samplers: global and per category (an item with two categories is in both).
  const all = new Int32Array(nItems);
  for (let i = 0; i < nItems; i++) all[i] = i;
  const globalAlias = new AliasTable(all, itemPopularity);
  const members: number[][] = specs.map(() => []);
  for (let i = 0; i < nItems; i++) {
    members[itemCategory[i]].push(i);
    if (itemCategory2[i] >= 0) members[itemCategory2[i]].push(i);
  }
  // Nobody browses a category without items (more categories than items).
  for (let k = 0; k < nCategories; k++) if (members[k].length === 0) categoryDemand[k] = 0;
  const categoryAlias = members.map((m) => {
    const values = Int32Array.from(m);
    const w = new Float64Array(values.length);
    for (let j = 0; j < values.length; j++) w[j] = Math.pow(itemPopularity[values[j]], CATEGORY_POP_EXP);
    return new AliasTable(values, w);
  });
  const categoryOffset = new Int32Array(nCategories + 1);
  for (let k = 0; k < nCategories; k++) categoryOffset[k + 1] = categoryOffset[k] + members[k].length;
  const nPacked = categoryOffset[nCategories];
  const packedItem = new Int32Array(nPacked);
  const packedVec = new Float32Array(nPacked * DIM);
  const packedCreated = new Float64Array(nPacked);
  const packedWithdrawn = new Float64Array(nPacked);
  for (let k = 0; k < nCategories; k++) {
    for (let j = 0; j < members[k].length; j++) {
      const slot = categoryOffset[k] + j;
      const i = members[k][j];
      packedItem[slot] = i;
      packedVec.set(itemVec.subarray(i * DIM, i * DIM + DIM), slot * DIM);
      packedCreated[slot] = itemCreated[i];
      packedWithdrawn[slot] = itemWithdrawn[i];
    }
  }

  // Users. Age bands lean towards different categories, so demographics carry some signal too.
  const bandLean = new Float64Array(AGE_BANDS.length * nCategories);
  for (let j = 0; j < bandLean.length; j++) bandLean[j] = Math.exp(0.7 * rng.normal());
  const userVec = new Float32Array(nUsers * DIM);
  const userCountry = new Uint8Array(nUsers);
  const userAge = new Uint8Array(nUsers);
  const userPriceSensitivity = new Float64Array(nUsers);
  const userConversion = new Float64Array(nUsers);
  const userJoined = new Float64Array(nUsers);
  const activity = new Float64Array(nUsers);
  const countryTotal = sum(COUNTRY_WEIGHTS);
  const ageTotal = sum(AGE_WEIGHTS);
  const favWeights = new Float64Array(nCategories);
  for (let u = 0; u < nUsers; u++) {
    userCountry[u] = pickWeighted(rng, COUNTRY_WEIGHTS, countryTotal);
    const band = pickWeighted(rng, AGE_WEIGHTS, ageTotal);
    userAge[u] = band;
    for (let k = 0; k < nCategories; k++)
      favWeights[k] = categoryDemand[k] * bandLean[band * nCategories + k];
    const favTotal = sum(favWeights);
    const nFav = 1 + (rng.float() < 0.45 ? 1 : 0) + (rng.float() < 0.15 ? 1 : 0);
    const norm = 1 / Math.sqrt(nFav);
    for (let f = 0; f < nFav; f++) {
      const k = pickWeighted(rng, favWeights, favTotal);
      for (let d = 0; d < DIM; d++) userVec[u * DIM + d] += norm * centroids[k * DIM + d];
    }
    for (let d = 0; d < DIM; d++) userVec[u * DIM + d] += USER_NOISE * rng.normal();
    userPriceSensitivity[u] = Math.max(0, 0.6 + 0.45 * rng.normal());
    userConversion[u] = 0.5 * rng.normal();
    const joinedInWindow = rng.float() < NEW_USER_SHARE;
    userJoined[u] = joinedInWindow
      ? Math.floor(startTime + rng.float() * windowMs)
      : Math.floor(startTime - rng.float() * 3 * 365 * DAY);
    // Pareto activity, scaled by the share of the window the user has been around.
    const active = (endTime - Math.max(userJoined[u], startTime)) / windowMs;
    activity[u] =
      Math.min(MAX_ACTIVITY, Math.pow(1 - rng.float(), -1 / ACTIVITY_ALPHA)) * Math.max(active, 0.01);
  }

  const userCategoryCum = new Float32Array(nUsers * nCategories);
  for (let u = 0; u < nUsers; u++) {
    let acc = 0;
    for (let k = 0; k < nCategories; k++) {
      let dot = 0;
      for (let d = 0; d < DIM; d++) dot += userVec[u * DIM + d] * centroids[k * DIM + d];
      acc += categoryDemand[k] * Math.exp((BETA_CATEGORY * dot) / DIM);
      userCategoryCum[u * nCategories + k] = acc;
    }
  }

  // Exact event quotas: proportional floor, then the remainder drawn by activity.
  const userEvents = new Int32Array(nUsers);
  const totalActivity = sum(activity);
  let assigned = 0;
  for (let u = 0; u < nUsers; u++) {
    userEvents[u] = Math.floor((nEvents * activity[u]) / totalActivity);
    assigned += userEvents[u];
  }
  const cumActivity = new Float64Array(nUsers);
  let acc = 0;
  for (let u = 0; u < nUsers; u++) cumActivity[u] = acc += activity[u];
  for (let r = assigned; r < nEvents; r++) {
    const x = rng.float() * acc;
    let lo = 0;
    let hi = nUsers - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cumActivity[mid] > x) hi = mid;
      else lo = mid + 1;
    }
    userEvents[lo]++;
  }

  // Sessions: lengths until the quota is met, starts spread over the user's active time with a
  // daily rhythm (quiet nights, busy evenings, UTC).
  let cap = Math.max(16, Math.ceil(nEvents / (MEAN_SESSION_EVENTS * 0.8)));
  let sUser = new Int32Array(cap);
  let sLen = new Int32Array(cap);
  let sStartSec = new Float64Array(cap);
  let nSessions = 0;
  const userSessions = new Int32Array(nUsers);
  const windowSec = Math.floor(windowMs / 1000);
  for (let u = 0; u < nUsers; u++) {
    let remaining = userEvents[u];
    const from = Math.max(0, Math.floor((userJoined[u] - startTime) / 1000));
    while (remaining > 0) {
      const len = Math.min(
        remaining,
        MAX_SESSION_EVENTS,
        1 + Math.floor(-Math.log(1 - rng.float()) * (MEAN_SESSION_EVENTS - 1)),
      );
      remaining -= len;
      let sec = 0;
      for (let attempt = 0; attempt < 8; attempt++) {
        sec = from + rng.int(windowSec - from);
        const hour = ((startTime / 1000 + sec) % 86_400) / 3600;
        // Rejection sampling of a daily curve: busy evenings (peak about 20:00 UTC), a lunchtime
        // bump from the second harmonic, quiet small hours (acceptance falls to about 0.1).
        const rhythm =
          0.55 +
          0.35 * Math.cos(((hour - 20) / 24) * 2 * Math.PI) +
          0.1 * Math.cos(((hour - 13) / 12) * 2 * Math.PI);
        if (rng.float() < rhythm) break;
      }
      if (nSessions === cap) {
        cap *= 2;
        const nu = new Int32Array(cap);
        nu.set(sUser);
        sUser = nu;
        const nl = new Int32Array(cap);
        nl.set(sLen);
        sLen = nl;
        const ns = new Float64Array(cap);
        ns.set(sStartSec);
        sStartSec = ns;
      }
      sUser[nSessions] = u;
      sLen[nSessions] = len;
      sStartSec[nSessions] = sec;
      nSessions++;
      userSessions[u]++;
    }
  }
  // Sort sessions by (start second, creation order) through one numeric key: native typed-array
  // sort, no comparator calls even for millions of sessions.
  const idxBits = Math.max(1, Math.ceil(Math.log2(nSessions + 1)));
  const mult = Math.pow(2, idxBits);
  if ((windowSec + 1) * mult > Number.MAX_SAFE_INTEGER) {
    throw new CairnError('CAIRN_VALIDATION', 'too many sessions for the window; use fewer events or days');
  }
  const keys = new Float64Array(nSessions);
  for (let s = 0; s < nSessions; s++) keys[s] = sStartSec[s] * mult + s;
  keys.sort();
  const sessionUser = new Int32Array(nSessions);
  const sessionLength = new Int32Array(nSessions);
  const sessionStart = new Float64Array(nSessions);
  for (let j = 0; j < nSessions; j++) {
    const s = keys[j] % mult;
    sessionUser[j] = sUser[s];
    sessionLength[j] = sLen[s];
    sessionStart[j] = startTime + sStartSec[s] * 1000;
  }

  return {
    seed: o.seed,
    nUsers,
    nItems,
    nEvents,
    nCategories,
    categoryNames: specs.map((s) => s.name),
    startTime,
    endTime,
    centroids,
    categoryDemand,
    itemVec,
    itemCategory,
    itemCategory2,
    itemPopularity,
    itemPriceZ,
    itemPrice,
    itemBrand,
    itemTitle,
    itemCreated,
    itemWithdrawn,
    anchorItem,
    categoryAlias,
    categoryOffset,
    packedItem,
    packedVec,
    packedCreated,
    packedWithdrawn,
    globalAlias,
    userVec,
    userCategoryCum,
    userCountry,
    userAge,
    userPriceSensitivity,
    userConversion,
    userJoined,
    userEvents,
    userSessions,
    sessionUser,
    sessionLength,
    sessionStart,
  };
}

// ---------------------------------------------------------------------------------------------
// The event stream.

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/**
 * Pull-based cursor over the event stream: `next()` advances and exposes the event in its fields,
 * so the fast path allocates nothing per event. Sessions are generated whole in start order and
 * their events merged through a small min-heap keyed by (timestamp, generation order); an event is
 * released once no later session can start before it, which makes the output globally time-ordered.
 */
class EventCursor {
  user = 0;
  item = 0;
  type = 0;
  /** Rating value (1–5); 0 for other types. */
  value = 0;
  timestamp = 0;
  /** 0-based position in the stream. */
  index = -1;

  private readonly w: World;
  private readonly rng: Rng;
  private session = 0;
  private seq = 0;
  // Heap of pending events, struct-of-arrays.
  private size = 0;
  private hTs: Float64Array = new Float64Array(256);
  private hSeq: Float64Array = new Float64Array(256);
  private hUser: Int32Array = new Int32Array(256);
  private hItem: Int32Array = new Int32Array(256);
  private hType: Uint8Array = new Uint8Array(256);
  private hValue: Uint8Array = new Uint8Array(256);
  // Per-user ring of recently engaged items, for revisits (returning to a cart, re-reading a page).
  private readonly history: Int32Array;
  private readonly historyCount: Uint8Array;
  private readonly historyHead: Uint8Array;
  /** Scratch: the scoring direction of the current item choice. */
  private readonly query = new Float64Array(DIM);
  private readonly candItem = new Int32Array(CANDIDATES);
  private readonly candWeight = new Float64Array(CANDIDATES);

  constructor(world: World) {
    this.w = world;
    this.rng = new Rng(mixSeed(world.seed, 1));
    this.history = new Int32Array(world.nUsers * HISTORY);
    this.historyCount = new Uint8Array(world.nUsers);
    this.historyHead = new Uint8Array(world.nUsers);
  }

  next(): boolean {
    const w = this.w;
    const nSessions = w.sessionStart.length;
    for (;;) {
      const horizon = this.session < nSessions ? w.sessionStart[this.session] : Infinity;
      if (this.size > 0 && this.hTs[0] <= horizon) {
        this.pop();
        return true;
      }
      if (this.session >= nSessions) return false;
      this.generateSession(this.session++);
    }
  }

  private pop(): void {
    this.user = this.hUser[0];
    this.item = this.hItem[0];
    this.type = this.hType[0];
    this.value = this.hValue[0];
    this.timestamp = this.hTs[0];
    this.index++;
    const last = --this.size;
    if (last > 0) this.siftDown(last);
  }

  /** Moves the entry at `from` to the root position and restores the heap. */
  private siftDown(from: number): void {
    const ts = this.hTs[from];
    const sq = this.hSeq[from];
    const us = this.hUser[from];
    const it = this.hItem[from];
    const ty = this.hType[from];
    const va = this.hValue[from];
    const n = this.size;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (
        c + 1 < n &&
        (this.hTs[c + 1] < this.hTs[c] ||
          (this.hTs[c + 1] === this.hTs[c] && this.hSeq[c + 1] < this.hSeq[c]))
      ) {
        c++;
      }
      if (this.hTs[c] > ts || (this.hTs[c] === ts && this.hSeq[c] > sq)) break;
      this.move(c, i);
      i = c;
    }
    this.hTs[i] = ts;
    this.hSeq[i] = sq;
    this.hUser[i] = us;
    this.hItem[i] = it;
    this.hType[i] = ty;
    this.hValue[i] = va;
  }

  private move(from: number, to: number): void {
    this.hTs[to] = this.hTs[from];
    this.hSeq[to] = this.hSeq[from];
    this.hUser[to] = this.hUser[from];
    this.hItem[to] = this.hItem[from];
    this.hType[to] = this.hType[from];
    this.hValue[to] = this.hValue[from];
  }

  private push(ts: number, user: number, item: number, type: number, value: number): void {
    if (this.size === this.hTs.length) this.grow();
    const sq = this.seq++;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      // seq is increasing, so an equal timestamp never moves above its parent.
      if (this.hTs[p] <= ts) break;
      this.move(p, i);
      i = p;
    }
    this.hTs[i] = ts;
    this.hSeq[i] = sq;
    this.hUser[i] = user;
    this.hItem[i] = item;
    this.hType[i] = type;
    this.hValue[i] = value;
  }

  private grow(): void {
    const n = this.hTs.length * 2;
    const f64 = (a: Float64Array): Float64Array => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    this.hTs = f64(this.hTs);
    this.hSeq = f64(this.hSeq);
    const i32 = (a: Int32Array): Int32Array => {
      const b = new Int32Array(n);
      b.set(a);
      return b;
    };
    this.hUser = i32(this.hUser);
    this.hItem = i32(this.hItem);
    const u8 = (a: Uint8Array): Uint8Array => {
      const b = new Uint8Array(n);
      b.set(a);
      return b;
    };
    this.hType = u8(this.hType);
    this.hValue = u8(this.hValue);
  }

  /** Standardised user–item affinity: about 1 inside a favourite category, about 0 elsewhere. */
  private affinity(u: number, i: number): number {
    const uv = this.w.userVec;
    const iv = this.w.itemVec;
    const a = u * DIM;
    const b = i * DIM;
    let s = 0;
    for (let d = 0; d < DIM; d++) s += uv[a + d] * iv[b + d];
    return s / DIM;
  }

  private pickCategory(u: number): number {
    const n = this.w.nCategories;
    const cum = this.w.userCategoryCum;
    const base = u * n;
    const x = this.rng.float() * cum[base + n - 1];
    for (let k = 0; k < n - 1; k++) if (x < cum[base + k]) return k;
    return n - 1;
  }

  private live(i: number, t: number): boolean {
    return this.w.itemCreated[i] <= t && t < this.w.itemWithdrawn[i];
  }

  private pickItem(u: number, category: number, current: number, t: number): number {
    const rng = this.rng;
    const r = rng.float();
    const count = this.historyCount[u];
    if (r < P_REVISIT && count > 0) {
      const i = this.history[u * HISTORY + rng.int(count)];
      if (i !== current && this.live(i, t)) return i;
    } else if (r >= P_REVISIT && r < P_REVISIT + P_POPULAR) {
      const i = this.w.globalAlias.draw(rng);
      if (i !== current && this.live(i, t)) return i;
    }
    // Taste within the session's category: popularity proposes candidates, affinity and similarity
    // to the current item choose among them (sampling-importance-resampling of pop × exp(score)).
    const w = this.w;
    const alias = w.categoryAlias[category];
    const offset = w.categoryOffset[category];
    const iv = w.itemVec;
    const pv = w.packedVec;
    // score(i) = (β·u + λ·v_current) · v_i / DIM: one dot product per candidate.
    const q = this.query;
    const uv = w.userVec;
    for (let d = 0; d < DIM; d++) {
      q[d] =
        (BETA_ITEM * uv[u * DIM + d] + (current >= 0 ? LAMBDA_SIMILAR * iv[current * DIM + d] : 0)) / DIM;
    }
    let n = 0;
    let total = 0;
    const size = alias.size;
    if (size > 0) {
      // Locals, not property loads: the calls into the generator would otherwise force reloads.
      const packedItem = w.packedItem;
      const created = w.packedCreated;
      const withdrawn = w.packedWithdrawn;
      const candItem = this.candItem;
      const candWeight = this.candWeight;
      for (let c = 0; c < CANDIDATES; c++) {
        const slot = offset + alias.slot(rng);
        const i = packedItem[slot];
        if (i === current || !(created[slot] <= t && t < withdrawn[slot])) continue;
        const base = slot * DIM;
        let score = 0;
        for (let d = 0; d < DIM; d++) score += q[d] * pv[base + d];
        const x = Math.exp(score);
        candItem[n] = i;
        candWeight[n] = x;
        total += x;
        n++;
      }
    }
    if (n > 0) {
      let x = rng.float() * total;
      for (let c = 0; c < n - 1; c++) {
        x -= this.candWeight[c];
        if (x < 0) return this.candItem[c];
      }
      return this.candItem[n - 1];
    }
    for (let attempt = 0; attempt < 16; attempt++) {
      const i = this.w.globalAlias.draw(rng);
      if (this.live(i, t)) return i;
    }
    return this.w.anchorItem;
  }

  private remember(u: number, i: number): void {
    const base = u * HISTORY;
    const count = this.historyCount[u];
    for (let j = 0; j < count; j++) if (this.history[base + j] === i) return;
    this.history[base + this.historyHead[u]] = i;
    this.historyHead[u] = (this.historyHead[u] + 1) % HISTORY;
    if (count < HISTORY) this.historyCount[u] = count + 1;
  }

  /** A random gap in ms, log-normal around `median` seconds, at least one second. */
  private gap(medianSec: number, sigma: number, maxSec: number): number {
    const s = medianSec * Math.exp(sigma * this.rng.normal());
    return Math.max(1000, Math.round(Math.min(s, maxSec) * 1000));
  }

  private generateSession(s: number): void {
    const w = this.w;
    const rng = this.rng;
    const u = w.sessionUser[s];
    const end = w.endTime;
    let remaining = w.sessionLength[s];
    let t = w.sessionStart[s] + rng.int(1000);
    let category = this.pickCategory(u);
    let current = -1;
    const conv = w.userConversion[u];
    const sens = w.userPriceSensitivity[u];
    // Each funnel step spends one event of the session's budget; a session cut short mid-funnel
    // simply ends there (later steps never appear without the earlier ones).
    while (remaining > 0) {
      const item = this.pickItem(u, category, current, t);
      current = item;
      const aff = this.affinity(u, item);
      const priceZ = w.itemPriceZ[item];
      this.push(Math.min(t, end), u, item, VIEW, 0);
      remaining--;
      let engaged = false;
      if (remaining > 0 && rng.float() < sigmoid(-1.6 + 1.6 * aff + conv)) {
        t += this.gap(8, 0.7, 120);
        this.push(Math.min(t, end), u, item, CLICK, 0);
        remaining--;
        engaged = true;
        if (remaining > 0 && rng.float() < sigmoid(-2.1 + 1.4 * aff + conv - 0.6 * sens * priceZ)) {
          t += this.gap(40, 0.8, 600);
          this.push(Math.min(t, end), u, item, CART, 0);
          remaining--;
          if (remaining > 0 && rng.float() < sigmoid(-0.8 + 1.0 * aff + conv - 0.4 * sens * priceZ)) {
            t += this.gap(90, 0.8, 900);
            this.push(Math.min(t, end), u, item, PURCHASE, 0);
            remaining--;
            if (remaining > 0 && rng.float() < 0.3) {
              t += this.gap(60, 1.0, 1800);
              this.push(Math.min(t, end), u, item, RATING, this.rating(aff));
              remaining--;
            }
          }
        } else if (remaining > 0 && rng.float() < 0.03) {
          t += this.gap(20, 0.8, 300);
          this.push(Math.min(t, end), u, item, RATING, this.rating(aff));
          remaining--;
        }
      } else if (remaining > 0 && aff < -0.2 && rng.float() < 0.25) {
        t += this.gap(4, 0.6, 60);
        this.push(Math.min(t, end), u, item, DISLIKE, 0);
        remaining--;
      }
      if (engaged || rng.float() < 0.25) this.remember(u, item);
      if (rng.float() < P_SWITCH_CATEGORY) category = this.pickCategory(u);
      t += this.gap(35, 0.8, 600);
    }
  }

  /** Stars correlated with affinity: mean ≈ 2.9 + affinity. */
  private rating(aff: number): number {
    const x = Math.round(2.9 + 1.0 * aff + 0.9 * this.rng.normal());
    return x < 1 ? 1 : x > 5 ? 5 : x;
  }
}

// ---------------------------------------------------------------------------------------------
// Public API.

function segmentsOf(w: World, u: number, loyalSessions: number): string[] {
  const segments: string[] = [];
  if (w.userJoined[u] >= w.endTime - 14 * DAY) segments.push('new');
  if (w.userSessions[u] >= loyalSessions && w.userJoined[u] < w.startTime) segments.push('loyal');
  if (w.userPriceSensitivity[u] >= 1.0) segments.push('bargain_hunter');
  if (w.userPriceSensitivity[u] <= 0.2 && w.userConversion[u] > 0) segments.push('big_spender');
  if (w.userConversion[u] <= -0.6) segments.push('window_shopper');
  if (w.userEvents[u] === 0) segments.push('dormant');
  return segments;
}

/**
 * Generates a catalog, users and a replayable event stream, deterministic for a seed.
 * Throws CAIRN_VALIDATION for invalid counts.
 */
export function generateDemoData(options: DemoDataOptions): DemoData {
  const w = buildWorld(options);
  const items: DemoItem[] = new Array<DemoItem>(w.nItems);
  for (let i = 0; i < w.nItems; i++) {
    const categories = [w.categoryNames[w.itemCategory[i]]];
    if (w.itemCategory2[i] >= 0) categories.push(w.categoryNames[w.itemCategory2[i]]);
    items[i] = {
      id: demoItemId(i),
      categories,
      attributes: { title: w.itemTitle[i], price: w.itemPrice[i], brand: w.itemBrand[i] },
      available: w.itemWithdrawn[i] === Infinity,
      created_at: w.itemCreated[i],
    };
  }
  // Loyal: among the most frequent visitors (top fifth by sessions, at least 4).
  const sorted = Int32Array.from(w.userSessions).sort();
  const loyalSessions = Math.max(4, sorted[Math.floor(sorted.length * 0.8)]);
  const users: DemoUser[] = new Array<DemoUser>(w.nUsers);
  for (let u = 0; u < w.nUsers; u++) {
    users[u] = {
      id: demoUserId(u),
      attributes: { country: COUNTRIES[w.userCountry[u]], age_band: AGE_BANDS[w.userAge[u]] },
      segments: segmentsOf(w, u, loyalSessions),
    };
  }
  const prefix = `e${w.seed}-`;
  return {
    items,
    users,
    startTime: w.startTime,
    endTime: w.endTime,
    *events(): Generator<DemoEvent> {
      const c = new EventCursor(w);
      while (c.next()) {
        const e: DemoEvent = {
          event_id: prefix + (c.index + 1),
          user_id: demoUserId(c.user),
          item_id: demoItemId(c.item),
          type: DEMO_EVENT_TYPES[c.type],
          timestamp: c.timestamp,
        };
        if (c.type === RATING) e.value = c.value;
        yield e;
      }
    },
  };
}

/**
 * The same events as `generateDemoData(options).events()`, as flat typed arrays without per-event
 * objects (benchmarks at tens of millions of events). Indices are dense: user `u` is
 * `demoUserId(u)`, item `i` is `demoItemId(i)`.
 */
export function generateInteractions(options: DemoDataOptions): DemoInteractions {
  const w = buildWorld(options);
  const n = w.nEvents;
  const userIdx = new Int32Array(n);
  const itemIdx = new Int32Array(n);
  const weights = new Float32Array(n);
  const timestamps = new Float64Array(n);
  const types = new Uint8Array(n);
  const c = new EventCursor(w);
  let k = 0;
  while (c.next()) {
    userIdx[k] = c.user;
    itemIdx[k] = c.item;
    types[k] = c.type;
    weights[k] = c.type === RATING ? c.value : TYPE_WEIGHT[c.type];
    timestamps[k] = c.timestamp;
    k++;
  }
  return {
    userIdx,
    itemIdx,
    weights,
    timestamps,
    types,
    typeNames: [...DEMO_EVENT_TYPES],
    users: w.nUsers,
    items: w.nItems,
  };
}
