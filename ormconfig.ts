/**
 * The TypeORM DataSource for the TypeORM CLI (`npx typeorm -d ormconfig.ts
 * migration:show` with a TypeScript loader): the database the service would
 * open with the same environment, made by the store's one factory
 * (src/store/dataSource.ts).
 */
import path from 'node:path';
import { createDataSource } from './src/store/dataSource.js';

const dataDir = process.env.COVERHELPER_DATA_DIR ?? './data';
export default createDataSource({ db: process.env.COVERHELPER_DB ?? path.join(dataDir, 'coverhelper.sqlite') });
