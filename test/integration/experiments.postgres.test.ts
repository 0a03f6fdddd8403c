/**
 * Runs the experiments and served-log conformance suite against the real PostgreSQL
 * (`CAIRN_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test), one schema per test,
 * all dropped afterwards. An unreachable server fails the file.
 */
import { describeExperimentsConformance } from '../../src/storage/conformance/experiments.conformance.ts';
import { postgresStores } from './helpers/pg-schemas.ts';

const stores = postgresStores('exp');
describeExperimentsConformance('postgres', stores.open, stores.dropAll);
