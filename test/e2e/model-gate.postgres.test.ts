/** Promotion gates, rejection, forced promotion and the model card end to end on PostgreSQL (see model-gate.ts). */
import { describeModelGates } from './model-gate.ts';

describeModelGates('postgres');
