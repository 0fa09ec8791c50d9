/** The copy engine's time helpers live in lib/ (the mover uses them too). */
export * from '../lib/rates.ts';
