/** The SQLite connection type the sub-stores share; its own module so they need not import the store that builds them. */
import type Database from 'better-sqlite3';

export type Db = Database.Database;
