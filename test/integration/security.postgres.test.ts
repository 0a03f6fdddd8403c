/**
 * Runs the keys, audit and settings conformance suite against the real PostgreSQL
 * (`CAIRN_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test), one schema per test,
 * all dropped afterwards. An unreachable server fails the file.
 */
import { describeSecurityConformance } from '../../src/storage/conformance/security.conformance.ts';
import { postgresStores } from './helpers/pg-schemas.ts';

const stores = postgresStores('sec');
describeSecurityConformance('postgres', stores.open, stores.dropAll);
